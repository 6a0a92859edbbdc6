"""Kill trials on `edgecnn deploy` (issue #25): a board must always end with exactly one of the two releases live.

    python tools/deploy_kill_trials.py [--host-kills 30] [--board-kills 10] [--board rsync|scp] [--out bench-out/deploy-kill]

Against a real OpenSSH server on loopback (tools/loopback_sshd.py), two releases of a LeNet-5 conversion are
deployed in turn to one folder, with a restart command that takes a moment and writes the service's health line:

- host kills: the `edgecnn deploy` process group SIGKILLed at a moment drawn uniformly from [0, 1.1 x the length of
  an uninterrupted deploy] (copying, starting the board's transaction, following it);
- board kills: the board's own transaction process (`edgecnn release run`) SIGKILLed at a random moment of its life
  (verifying, switching, restarting, watching), as a power cut would; the host, still following, finishes it;
- connection cuts: every sshd session killed while the copy, the switch and the health watch run.

After each trial, once the board holds no lock: `current` points at one of the two releases (never a dangling link),
`previous` at the other or nowhere, and the journal has an end for every transaction that took the lock. At the end
`--rollback` must work. Prints a table of outcomes and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from loopback_sshd import SSHServer  # noqa: E402

EDGECNN = [sys.executable, "-m", "edgecnn"]
HEALTHY = """sh -c 'sleep 0.4; printf "{{\\"time\\": %s, \\"t_s\\": 0}}\\n" "$(date +%s.%N)" >> {health}'"""


class Board:
    def __init__(self, server: SSHServer, to: Path, cache: Path) -> None:
        self.server, self.to = server, to
        edgecnn = str(Path(sys.executable).parent / "edgecnn")
        self.on = ["--on", server.url, "--ssh-config", str(server.config), "--remote-edgecnn", edgecnn, "--remote-cache", str(cache)]
        health = to / "health.jsonl"
        self.watch = ["--restart", HEALTHY.format(health=health), "--health", str(health), "--grace", "10"]

    def deploy_argv(self, art: Path) -> list[str]:
        return [*EDGECNN, "deploy", str(art), "--to", str(self.to), *self.watch, *self.on]

    def journal(self) -> list[dict]:
        path = self.to / ".deploy" / "journal.jsonl"
        out = []
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def settled(self, timeout: float = 60) -> bool:
        """Wait until every transaction that took the lock has ended (the board finishes them by itself, or the
        next one to look does) and nobody holds the lock."""
        from edgecnn.remote.journal import lock_is_free

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _release_running(self.to) or ((self.to / ".deploy" / "lock").exists() and not lock_is_free(self.to)):
                time.sleep(0.1)
                continue
            open_txns = _unfinished(self.journal())
            if not open_txns:
                return True
            # a transaction whose process died without an end: the next look (status) finishes it
            subprocess.run([*EDGECNN, "release", "follow", "--to", str(self.to), "--id", open_txns[0], "--timeout", "30"],
                           capture_output=True, timeout=60)
        return False

    def check(self, releases: dict[str, str]) -> tuple[str, list[str]]:
        """(which release is live, problems)."""
        problems = []

        def target(name: str) -> str | None:
            p = self.to / name
            if not p.is_symlink():
                return None
            t = os.readlink(p)
            if not (self.to / t).is_dir():
                problems.append(f"{name} -> {t} dangles")
            return t

        current, previous = target("current"), target("previous")
        if current not in releases:
            problems.append(f"current -> {current}: not one of the two releases")
        if previous is not None and previous not in releases:
            problems.append(f"previous -> {previous}: not one of the two releases")
        if previous == current and current is not None:
            problems.append("previous and current are the same release")
        if _unfinished(self.journal()):
            problems.append(f"unfinished transactions: {_unfinished(self.journal())}")
        return releases.get(current, "none"), problems


def _release_running(to: Path) -> bool:
    """An `edgecnn release` process for ``to`` still runs (a killed deploy's `release start` may still be starting
    its transaction)."""
    import psutil

    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and "release" in cmd and str(to) in cmd and "follow" not in cmd:
            return True
    return False


def _unfinished(journal: list[dict]) -> list[str]:
    steps: dict[str, set] = {}
    for r in journal:
        steps.setdefault(r.get("id"), set()).add(r.get("step"))
    return [i for i, s in steps.items() if "locked" in s and "end" not in s]


def release_copies(artifact: Path, out: Path) -> list[Path]:
    arts = []
    for tag in ("a", "b"):
        dst = out / f"release-{tag}"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(artifact, dst)
        (dst / "summary.md").write_text((dst / "summary.md").read_text() + f"\n<!-- release {tag} -->\n")
        arts.append(dst)
    return arts


def host_kills(board: Board, arts: list[Path], n: int, rng: random.Random, releases: dict[str, str]) -> list[dict]:
    t0 = time.monotonic()
    subprocess.run(board.deploy_argv(arts[1]), capture_output=True, timeout=300)
    full = time.monotonic() - t0
    trials = []
    for i in range(n):
        art = arts[i % 2]
        at = rng.uniform(0, 1.1 * full)
        proc = subprocess.Popen(board.deploy_argv(art), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=at)
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            finished = False
        settled = board.settled()
        live, problems = board.check(releases)
        problems += [] if settled else ["the board did not settle within 60 s"]
        trials.append({"kind": "host SIGKILL", "at_s": round(at, 2), "killed": not finished, "wanted": art.name,
                       "live": live, "problems": problems})
    return trials


def _txn_seconds(board: Board) -> float:
    """How long the last finished transaction took on the board, from its start to its end."""
    recs = board.journal()
    last = recs[-1]["id"] if recs else None
    times = [r["time"] for r in recs if r["id"] == last and r["step"] in ("started", "end")]
    return max(times) - min(times) if len(times) == 2 else 1.5


def board_kills(board: Board, arts: list[Path], n: int, rng: random.Random, releases: dict[str, str]) -> list[dict]:
    trials = []
    span = _txn_seconds(board)
    for i in range(n):
        art = arts[i % 2]
        seen = len(board.journal())
        proc = subprocess.Popen(board.deploy_argv(art), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # every other trial at a random moment of the transaction's life; the rest the instant a step is journaled
        steps = ("verifying", "switching", "switched", "restarted")
        at = None if i % 2 == 0 else steps[(i // 2) % len(steps)]
        killed_step = _kill_board_txn(board, seen, rng.uniform(0, span), at)
        _, err = proc.communicate(timeout=300)
        settled = board.settled()
        live, problems = board.check(releases)
        problems += [] if settled else ["the board did not settle within 60 s"]
        trials.append({"kind": "board SIGKILL", "killed_in": killed_step, "wanted": art.name, "live": live,
                       "host_exit": proc.returncode, "host_said": (err.strip().splitlines() or [""])[-1][:120],
                       "problems": problems})
    return trials


def _kill_board_txn(board: Board, seen: int, delay: float, at: str | None = None) -> str | None:
    """SIGKILL the board's transaction process ``delay`` seconds after it started (or the instant it journals the
    step ``at``); the step it was in."""
    deadline = time.monotonic() + 60
    started = None
    while time.monotonic() < deadline:
        recs = board.journal()[seen:]
        started = next((r for r in recs if r["step"] == "started"), None)
        if started or any(r["step"] == "end" for r in recs):
            break
        time.sleep(0.01)
    if started is None:
        return None
    if at is not None:
        while time.monotonic() < deadline:
            recs = [r for r in board.journal() if r["id"] == started["id"]]
            if any(r["step"] in (at, "end") for r in recs):
                break
            time.sleep(0.002)
    else:
        time.sleep(max(0.0, started["time"] + delay - time.time()))
    recs = [r for r in board.journal() if r["id"] == started["id"]]
    if any(r["step"] == "end" for r in recs):
        return "after its end"
    try:
        os.kill(started["pid"], signal.SIGKILL)
    except ProcessLookupError:
        return "after its end"
    return recs[-1]["step"]


def connection_cuts(board: Board, arts: list[Path], releases: dict[str, str], big: Path) -> list[dict]:
    trials = []
    for phase in ("copy", "switch", "watch"):
        art = big if phase == "copy" else arts[len(trials) % 2]
        seen = len(board.journal())
        cut = threading.Event()

        def watcher(phase: str = phase, seen: int = seen, cut: threading.Event = cut) -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if phase == "copy":
                    ready = any(board.to.glob("releases/*.part-*/*"))
                else:
                    want = "switching" if phase == "switch" else "restarted"
                    ready = any(r["step"] == want for r in board.journal()[seen:])
                if ready:
                    board.server.kill_sessions()
                    cut.set()
                    return
                time.sleep(0.005)

        t = threading.Thread(target=watcher)
        t.start()
        proc = subprocess.run(board.deploy_argv(art), capture_output=True, text=True, timeout=600)
        t.join()
        settled = board.settled()
        live, problems = board.check(releases)
        problems += [] if settled else ["the board did not settle within 60 s"]
        said = (proc.stderr.strip().splitlines() or [""])[-1][:120]
        trials.append({"kind": f"connection cut during the {phase}", "cut": cut.is_set(), "wanted": art.name, "live": live,
                       "host_exit": proc.returncode, "host_said": said, "problems": problems})
    return trials


def big_release(artifact: Path, out: Path) -> Path:
    """A release with 200 MB of weights beside the model, so that a copy takes long enough to be cut."""
    dst = out / "release-big"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(artifact, dst)
    with open(dst / "padding.bin", "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host-kills", type=int, default=30)
    ap.add_argument("--board-kills", type=int, default=10)
    ap.add_argument("--board", choices=["rsync", "scp"], default="rsync")
    ap.add_argument("--artifact", type=Path, help="a conversion output folder (default: made once in --out)")
    ap.add_argument("--seed", type=int, default=25)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "deploy-kill")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.artifact is None:
        from hostile_inputs import make_artifact

        args.artifact, _ = make_artifact(args.out)
    server = SSHServer(args.out / f"sshd-{args.board}", rsync=args.board == "rsync")
    try:
        work = args.out / "board"
        shutil.rmtree(work, ignore_errors=True)
        board = Board(server, work / "app", work / "cache")
        arts = release_copies(args.artifact, args.out)
        big = big_release(args.artifact, args.out)
        first = subprocess.run(board.deploy_argv(arts[0]), capture_output=True, text=True, timeout=300)
        if first.returncode != 0:
            print(first.stderr)
            return 1
        names = {}
        for art in [*arts, big]:
            from edgecnn.remote.transport import folder_digest

            names[f"releases/{folder_digest(art)[:16]}"] = art.name
        rng = random.Random(args.seed)
        trials = host_kills(board, arts, args.host_kills, rng, names)
        trials += board_kills(board, arts, args.board_kills, rng, names)
        trials += connection_cuts(board, arts, names, big)
        back = subprocess.run([*EDGECNN, "deploy", "--rollback", "--to", str(board.to), *board.on], capture_output=True, text=True)
        rollback_ok = back.returncode == 0
    finally:
        server.stop()
    (args.out / "trials.json").write_text(json.dumps(trials, indent=2))
    bad = [t for t in trials if t["problems"]]
    by_kind: dict[str, dict[str, int]] = {}
    for t in trials:
        row = by_kind.setdefault(t["kind"], {})
        row[f"{t['live']} live"] = row.get(f"{t['live']} live", 0) + 1
    for kind, row in by_kind.items():
        print(f"{kind:32} " + ", ".join(f"{k}: {v}" for k, v in sorted(row.items())))
    for t in bad:
        print("VIOLATION", t)
    print(f"--rollback afterwards: {'ok' if rollback_ok else 'FAILED: ' + back.stderr.strip()[-200:]}")
    print(f"deploy kill trials ({args.board} board): {len(trials)} trials, {len(bad)} violations, "
          f"{sum(1 for t in trials if t['kind'] == 'host SIGKILL' and t.get('killed'))} host processes killed mid-deploy, "
          f"{sum(1 for t in trials if t['kind'] == 'board SIGKILL' and t.get('killed_in') not in (None, 'after its end'))} "
          "board transactions killed")
    return 0 if not bad and rollback_ok else 1


if __name__ == "__main__":
    sys.exit(main())
