"""Device side: edgecnn devices: list or show device profiles; detect this host."""

from __future__ import annotations

import json

HELP = "list / show device profiles; --detect names the profile of this host"


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="profile to show")
    p.add_argument("--detect", action="store_true", help="detect which profile matches this machine")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from edgecnn import config, devices
    from edgecnn.cli import console
    from edgecnn.cli.tables import Column, fitted

    out = console()
    if args.detect:
        return _detect(args, out)
    if args.name:
        profile = devices.load_profile(args.name)
        data = config.to_dict(profile)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            import yaml

            out.print(yaml.safe_dump(data, sort_keys=False), markup=False)
        return 0
    profiles = [devices.load_profile(n) for n in devices.list_profiles()]
    if args.json:
        print(json.dumps([config.to_dict(p) for p in profiles], indent=2))
        return 0
    columns = [
        Column("name"),
        Column("description", keep=0, fold_to=28),
        Column("CPU", keep=3, fold_to=12),
        Column("fp32 GFLOPS", keep=2, justify="right", fold_to=7),
        Column("int8 GOPS", keep=1, justify="right", fold_to=5),
        Column("mem GB/s", keep=1, justify="right", fold_to=5),
        Column("artifacts"),
        Column("runtime chain", keep=4),
    ]
    rows = [
        [
            p.name,
            p.description,
            f"{p.cpu.cores}x {p.cpu.model}",
            f"{p.cpu.peak_fp32_gflops:g}",
            f"{p.cpu.peak_int8_gops:g}",
            f"{p.memory.bandwidth_gbps:g}",
            "\n".join(p.artifacts),
            " ->\n".join(p.runtimes),
        ]
        for p in profiles
    ]
    table = fitted("device profiles (edgecnn devices NAME shows one in full)", columns, rows, out.width)
    out.print(table)
    return 0


def _detect(args, out) -> int:
    """The profile that matches this machine, why, and the CPU features that decide int8 and bf16."""
    import json

    from edgecnn import config, devices

    name, reason = devices.detect()
    profile = devices.load_profile(name)
    facts = devices.host_facts(query_gpu=False)
    features = devices.cpu_features(facts.flags)
    outlook = devices.int8_outlook(facts.flags, facts.arch)
    if args.json:
        print(json.dumps({"profile": name, "reason": reason, "features": features, "int8_outlook": outlook,
                          "details": config.to_dict(profile)}, indent=2))
    else:
        out.print(f"[bold]{name}[/bold]: {reason}")
        out.print(f"  {profile.description}")
        out.print(
            f"  peak fp32 {profile.cpu.peak_fp32_gflops} GFLOPS, int8 {profile.cpu.peak_int8_gops} GOPS, flags {' '.join(profile.cpu.flags) or '-'}"
        )
        out.print("  this CPU: " + "; ".join(f"{k}: {', '.join(v) or 'no'}" for k, v in features.items()), markup=False)
        out.print(f"  {outlook}", markup=False)
    return 0
