"""Helpers of tools/arm64_check.sh that run on the x86 side (or, for ``decode``, on either side).

python tools/arm64_helpers.py keys DIR                 # an elliptic-curve key pair for signing (once)
python tools/arm64_helpers.py videos RUN DIR           # the run's held-out digits: FFV1 (lossless) and MJPEG
python tools/arm64_helpers.py compare ARM X86 PASS ART VIDEO   # one TSV row: frames agreeing, near-tie flips
python tools/arm64_helpers.py decode VIDEO OUT.npy     # every decoded frame (run under emulation too)
python tools/arm64_helpers.py pixels ARM.npy X86.npy   # how many decoded pixel values differ
python tools/arm64_helpers.py profile PROFILE.json     # one line from an emulated profile
python tools/arm64_helpers.py ssh WORK ART SITE ROOT   # the emulated Pi as a board over SSH (a real sshd on loopback)
python tools/arm64_helpers.py board_install WORK ROOT  # edgecnn board install --offline onto the bare emulated Pi (#26)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NEAR_TIE = 0.05  # a flip between the two best classes of a frame x86 found this close is input noise


def keys(folder: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    d = Path(folder)
    d.joinpath("signing.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    d.joinpath("signing.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def videos(run: str, folder: str) -> None:
    """Lossless, so that both machines classify the same pixels; and MJPEG, as a camera or encoder delivers them."""
    from edgecnn.host.data import load_dataset
    from edgecnn.host.data.video import write_video
    from edgecnn.host.train.recipe import load_recipe

    r = load_recipe(f"{run}/recipe.resolved.yaml")
    test = load_dataset(r.data).split(validation=r.split.validation, test=r.split.test, seed=r.seed)[2]
    write_video(test.images, f"{folder}/heldout-ffv1.mkv", fps=10, size=(64, 64), codec="FFV1")
    write_video(test.images, f"{folder}/heldout-mjpg.avi", fps=10, size=(64, 64), codec="MJPG")


def compare(arm: str, x86: str, *labels: str) -> None:
    def rows(path: str) -> list:
        return [json.loads(line)["top"] for line in open(path) if line.startswith("{")]

    a, b = rows(arm), rows(x86)
    agree = sum(p[0]["label"] == q[0]["label"] for p, q in zip(a, b))
    near = sum(p[0]["label"] != q[0]["label"] and len(q) > 1 and q[0]["p"] - q[1]["p"] < NEAR_TIE for p, q in zip(a, b))
    print("\t".join(map(str, (*labels, agree, max(len(a), len(b)), near))))


def decode(video: str, out: str) -> None:
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(video, cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    np.save(out, np.stack(frames))


def pixels(arm: str, x86: str) -> None:
    import numpy as np

    d = np.abs(np.load(arm).astype(int) - np.load(x86).astype(int))
    print(f"{(d > 0).mean():.1%} of pixel values differ (max {d.max()})")


def profile(path: str) -> None:
    p = json.loads(Path(path).read_text())
    print(
        f"profile {p['model']['format']}/{p['model']['precision']} on {p['system']['cpu_model']} ({p['system']['arch']}): "
        f"invoke p50 {p['invoke']['p50']:.2f} ms under emulation (says nothing about a real board); "
        f"self-check passed: {p['self_check']['passed']}"
    )


def ssh(work: str, art: str, site: str, root: str) -> None:
    """profile and verify --run --on a real OpenSSH server on 127.0.0.1 whose board edgecnn is the emulated aarch64
    Python (a 64-bit Pi userland reached over SSH), driven by this checkout's edgecnn on x86. One line; exit 1 when
    a step fails, 0 with "skipped" where sshd is not installed."""
    import os
    import shutil
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loopback_sshd import SSHServer, Unavailable

    w = Path(work)
    shutil.rmtree(w / "sshd", ignore_errors=True)  # fresh keys each run (ssh-keygen will not overwrite)
    try:
        server = SSHServer(w / "sshd")
    except Unavailable as why:
        print(f"arm64 over SSH: skipped: {why}")
        return
    board = w / "edgecnn-aarch64"  # the board's edgecnn command: the emulated Python with the Pi's package set
    cpu = os.environ.get("QEMU_CPU", "cortex-a72")
    board.write_text(
        f"#!/bin/sh\nexport QEMU_CPU={cpu} PYTHONPATH={site}\n"
        f'exec qemu-aarch64-static -L {root} {root}/usr/bin/python3.11 -m edgecnn "$@"\n'
    )
    board.chmod(0o755)
    on = ["--on", server.url, "--ssh-config", str(server.config), "--remote-edgecnn", str(board)]
    on += ["--remote-cache", str(w / "board-cache")]

    def edgecnn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgecnn", *args, *on], capture_output=True, text=True, timeout=900)

    try:
        shutil.rmtree(w / "board-cache", ignore_errors=True)
        profile_args = ("profile", f"{art}/tflite-int8", "--device", "rpi4", "--runs", "30", "--min-seconds", "0", "--json")
        first, again = edgecnn(*profile_args), edgecnn(*profile_args)
        verify = edgecnn("verify", art, "--run", "--trust-key", str(Path(art).parent / "signing.pub"))
    finally:
        server.stop()
    for name, proc in (("profile", first), ("profile again", again), ("verify --run --trust-key", verify)):
        if proc.returncode != 0:
            print(f"arm64 over SSH: {name} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
            sys.exit(1)
    p, q = json.loads(first.stdout), json.loads(again.stdout)
    copied, cached = p["measured_on"]["copy"], q["measured_on"]["copy"]
    print(
        f"arm64 over SSH: profile --on {p['measured_on']['board']} measured on {p['system']['cpu_model']} "
        f"({p['system']['arch']}, {p['runtime']['runtime']} {p['runtime'].get('version', '')}), self-check passed: "
        f"{p['self_check']['passed']}; copy {copied['seconds']:.2f} s ({copied['method']}), again "
        f"{cached['seconds']:.2f} s ({cached['method']}); verify --run --trust-key on the board: "
        f"{verify.stdout.count('self-check passed')} self-check(s) passed"
    )
    if not (p["system"]["arch"] == "aarch64" and p["self_check"]["passed"] and cached["method"] == "cached"):
        sys.exit(1)


# ---- edgecnn board install onto the bare emulated Pi (#26) --------------------------------------------------------
def emulated_board(work: Path, root: str):
    """A bare board over SSH whose python3 is the emulated aarch64 Python (first on its PATH) and whose pip can
    reach no index. Its python3 is a script running qemu with ``-0``, so that the Python sees its own path as
    sys.executable: a venv made from it links to the script, and the venv's edgecnn runs under emulation without
    binfmt_misc. Every file the guest opens is looked up in ROOT first (-L): its /proc/cpuinfo and device-tree
    model are the Pi 4's."""
    import os
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "remote"))
    from board_server import BoardServer

    shutil.rmtree(work, ignore_errors=True)
    bin_dir = work / "board-bin"
    bin_dir.mkdir(parents=True)
    cpu = os.environ.get("QEMU_CPU", "cortex-a72")
    python = bin_dir / "python3"
    python.write_text(
        f'#!/bin/sh\nexport QEMU_CPU={cpu}\nexec qemu-aarch64-static -L {root} -0 "$0" {root}/usr/bin/python3.11 "$@"\n'
    )
    python.chmod(0o755)
    return BoardServer(
        work / "board",
        PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_CONFIG_FILE="/dev/null",
        PIP_RETRIES="1",
    )


def board_install_on_emulated_pi(work: Path, root: str, host_cache: Path) -> dict:
    """``board install --offline`` twice, then ``profile --on`` with no --remote-edgecnn: wall times, what was copied
    and what the board measured. Raises RuntimeError naming the step that failed."""
    import os
    import subprocess
    import time

    from edgecnn.resources import resource_dir

    server = emulated_board(work, root)
    env = {**os.environ, "EDGECNN_CACHE": str(host_cache)}

    def edgecnn(*args: str) -> tuple[dict, float]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "edgecnn", *args, *server.on(), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} {args[1]}: {(proc.stderr or proc.stdout).strip()[-400:]}")
        return json.loads(proc.stdout), time.monotonic() - t0

    try:
        first, first_s = edgecnn("board", "install", "--offline")
        again, again_s = edgecnn("board", "install", "--offline")
        artifact = resource_dir("assets") / "selfcheck" / "lenet5-digits" / "tflite-fp32"
        profile, _ = edgecnn("profile", str(artifact), "--device", "rpi4", "--runs", "20", "--min-seconds", "0")
    finally:
        server.stop()
    return {"first": first, "first_s": first_s, "again": again, "again_s": again_s, "profile": profile}


def board_install(work: str, root: str) -> None:
    """One line for tools/arm64_check.sh; exit 1 when a step fails, 0 with "skipped" where sshd is not installed."""
    from _pytest.outcomes import Skipped

    w = Path(work)
    try:
        r = board_install_on_emulated_pi(w / "board-install", root, w / "host-cache")
    except Skipped as why:
        print(f"arm64 board install: skipped: {why.msg}")
        return
    except RuntimeError as why:
        print(f"arm64 board install: {why}")
        sys.exit(1)
    f, a, p = r["first"], r["again"], r["profile"]
    v = f["versions"]
    print(
        f"arm64 board install --offline on the bare emulated {f['profile']} over SSH: {r['first_s']:.0f} s, "
        f"{f['bytes_copied'] / 2**20:.1f} MB copied (edgecnn {v.get('edgecnn')}, ai-edge-litert {v.get('ai-edge-litert')}, "
        f"numpy {v.get('numpy')}; {f['size_bytes'] / 2**20:.0f} MB on disk; self-check {f['self_check'][:40]}...); again "
        f"{r['again_s']:.0f} s, {a['bytes_copied'] / 2**20:.1f} MB copied ({a['mode']}); profile --on without "
        f"--remote-edgecnn: {p['system']['cpu_model']} ({p['system']['arch']}), {p['runtime']['runtime']}, self-check "
        f"passed: {p['self_check']['passed']}"
    )
    print("arm64 board install: first install's steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in f["steps"].items()))
    ok = f["installed"] and not a["installed"] and a["bytes_copied"] == 0 and p["system"]["arch"] == "aarch64"
    if not (ok and p["self_check"]["passed"] and f["profile"] == "rpi4"):
        sys.exit(1)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
