"""Host side: edgecnn demo: train -> convert -> profile -> classify a video -> report.md, on the bundled digits."""

from __future__ import annotations

from edgecnn.cli.args import number

HELP = "run the whole path on the bundled digits (offline) and write report.md"


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--device", default="rpi4", help="second device profile to convert for and estimate (default rpi4)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--profile-seconds", type=number(above=0, hi=600), default=1.0, help="minimum seconds per latency mode (default 1)"
    )


def run(args) -> int:
    import sys

    from edgecnn.host.demo import run_demo

    r = run_demo(
        args.out,
        device=args.device,
        force=args.force,
        profile_seconds=args.profile_seconds,
        say=lambda m: print(m, file=sys.stderr, flush=True),
    )
    from edgecnn import liblog

    liblog.keep_in(r["out"])
    c, t = r["classify"], r["train"]
    fastest = min(r["profile"], key=lambda p: p["invoke_p50_ms"])
    print(f"demo finished in {r['timings_s']['total']:.0f} s -> {r['out']}/report.md")
    print(f"  training: test accuracy {t['accuracy'] * 100:.2f}% on {t['n']} held-out digits")
    for dev, conv in r["convert"].items():
        print(
            f"  convert {dev}: "
            + ", ".join(
                f"{a['format']}/{a['precision']} {a['status']} ({a['parity']['artifact_accuracy'] * 100:.1f}%)"
                for a in conv["rows"]
            )
        )
    est = fastest["estimate_" + r["device"] + "_ms"]
    low, high = fastest.get("estimate_" + r["device"] + "_range_ms") or (est, est)
    print(
        f"  fastest here: {fastest['artifact']} invoke p50 {fastest['invoke_p50_ms']:.3f} ms "
        f"(estimate for {r['device']}: {est:.3f} ms, likely {low:.3f}-{high:.3f} ms)"
    )
    print(
        f"  stream: {c['correct']}/{c['frames']} held-out digits classified correctly from video with {c['artifact']} at {c['fps']:.0f} FPS"
    )
    return 0
