"""Device side: the board's own half of ``edgecnn deploy``: one locked transaction in ``TO`` that verifies, switches,
restarts, watches and then commits or rolls back by itself, whether or not the host that asked is still connected
(the device commits or rolls back, as Mender and RAUC do).

On the board, under ``TO``::

    releases/<16 hex>/       each release, named by its content (the only names deploy makes, and prunes)
    current -> releases/X    what the service runs (point it at TO/current)
    previous -> releases/Y   what --rollback goes back to
    .deploy/lock             an exclusive lock (flock): one transaction at a time, a second one waits
    .deploy/journal.jsonl    every step of every transaction, one JSON object a line: what the host follows

A transaction writes its intent (``switching``: from, older, to) to the journal before it touches a link, and
``previous`` before ``current``; so a transaction killed at any moment (SIGKILL, power, a reboot by the restart
command) is finished by the next one that takes the lock, or by the host's ``follow`` when it finds the lock free:
the new release is kept if its service came up healthy, else both links go back and the service is restarted.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ArtifactError, ConfigError, EdgeCNNError

RELEASE_NAME = re.compile(r"[0-9a-f]{16}")
PART_NAME = re.compile(r"[0-9a-f]{16}\.part-[0-9a-f]{8}")
STALE_PART_S = 3600
MAX_JOURNAL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Transaction:
    """What one deploy (``release`` set) or rollback (``release`` None) asks of the board."""

    to: str
    id: str
    release: str | None = None
    restart: str | None = None
    health: str | None = None
    check: str | None = None
    healthz: str | None = None  # an edgecnn serve /healthz URL: 200, and serving one of the release's models
    grace: float = 10.0
    keep: int = 3
    trust_key: str | None = None
    wait: bool = True

    def argv(self) -> list[str]:
        """The ``edgecnn release run`` arguments that carry out this transaction in a process of its own."""
        out = ["--to", self.to, "--id", self.id, "--grace", f"{self.grace:g}", "--keep", str(self.keep)]
        for flag, value in (("--release", self.release), ("--restart", self.restart), ("--health", self.health),
                            ("--check", self.check), ("--healthz", self.healthz), ("--trust-key", self.trust_key)):
            out += [flag, value] if value else []
        return out + ([] if self.wait else ["--no-wait"]) + ([] if self.release else ["--rollback"])


class Journal:
    """TO/.deploy/journal.jsonl: appended one whole line per write (O_APPEND), read by anyone."""

    def __init__(self, to: str | Path) -> None:
        self.folder = Path(to) / ".deploy"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "journal.jsonl"

    def write(self, txn: str, step: str, /, **fields: Any) -> dict[str, Any]:
        record = {"id": txn, "step": step, "time": round(time.time(), 3), "pid": os.getpid(), **fields}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def records(self, txn: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut by a crash
            if isinstance(rec, dict) and (txn is None or rec.get("id") == txn):
                out.append(rec)
        return out

    def rotate(self) -> None:
        """Keep the journal small: past MAX_JOURNAL_BYTES it moves to journal.1 (called under the lock)."""
        if self.path.is_file() and self.path.stat().st_size > MAX_JOURNAL_BYTES:
            os.replace(self.path, self.path.with_suffix(".jsonl.1"))


@contextmanager
def locked(to: Path, journal: Journal, txn: str, *, wait: bool, quiet: bool = False) -> Iterator[None]:
    """Hold TO's exclusive lock; waiting for it is said in the journal (or refused with ``wait`` False). ``quiet``:
    no journal records (a recovery's own lock, which is no transaction)."""
    fd = os.open(journal.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise _busy(to, holder) from None
            if not quiet:
                journal.write(txn, "waiting", holder=holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"id": txn, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        if not quiet:
            journal.write(txn, "locked")
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _busy(to: Path, holder: str) -> ConfigError:
    return ConfigError(
        f"another deploy to {to} is under way ({holder}); not waiting (--no-wait)",
        hint="run it again when that one has finished, or without --no-wait to queue behind it",
    )


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"transaction {info['id']}, pid {info['pid']}, for {time.time() - float(info['since']):.0f} s"
    except (ValueError, KeyError, TypeError):
        return "another transaction"


def lock_is_free(to: Path) -> bool:
    fd = os.open(Path(to) / ".deploy" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# -- links -----------------------------------------------------------------------------------------------------------


def read_link(to: Path, name: str) -> str | None:
    try:
        return os.readlink(to / name)
    except (FileNotFoundError, OSError):
        return None


def set_link(to: Path, name: str, target: str | None) -> None:
    """Point ``to/name`` at ``target`` (relative) in one rename, durably; None removes the link."""
    path = to / name
    if target is None:
        path.unlink(missing_ok=True)
    else:
        tmp = to / f".{name}.new-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, path)
    from edgecnn.atomic import fsync_dir

    fsync_dir(to)


def release_folder(to: Path, target: str | None, what: str) -> Path:
    """``to/target`` when it is a release folder deploy made (not a link, still there); else one clear error."""
    if not target:
        raise ArtifactError(f"{to}: nothing to roll back to ({to}/previous does not exist)")
    name = Path(target).name
    path = to / "releases" / name
    if target != f"releases/{name}" or not RELEASE_NAME.fullmatch(name):
        raise ArtifactError(f"{to}: {what} points at {target!r}, which is not a release deploy made")
    if path.is_symlink() or not path.is_dir():
        raise ArtifactError(f"{to}: {what} points at {target}, which no longer exists", hint="deploy a release again")
    return path


# -- the service ------------------------------------------------------------------------------------------------------


def restart(command: str | None) -> str | None:
    """Run the restart command here; the reason it failed, or None."""
    if not command:
        return None
    try:
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, errors="replace", timeout=300,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "the restart command did not finish within 300 s"
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        return f"the restart command exited with status {proc.returncode}" + (f" ({last[-1][:200]})" if last else "")
    return None


def service_started(health: str) -> float:
    """When the process that wrote the health log's last line started (its ``time`` less its ``t_s``); 0 when there
    is no line yet, or the last line is a stopped process's final one (``ended_by``)."""
    try:
        with open(health, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        line = json.loads(lines[-1]) if lines else {}
        return 0.0 if "ended_by" in line else float(line["time"]) - float(line["t_s"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return 0.0


def serving(url: str, folder: Path) -> str | None:
    """None when the edgecnn serve at ``url`` (its /healthz) answers 200 with one of ``folder``'s models, else why not."""
    import urllib.error
    import urllib.request

    digests = {_digest(d) for d in sorted(folder.iterdir()) if (d / "edgecnn.json").is_file()}
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - the user's own health URL on the board
            status, body = resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536)
    except (OSError, ValueError) as exc:
        return f"{url} did not answer ({exc})"
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = {}
    served = str(answer.get("model_digest", "")) if isinstance(answer, dict) else ""
    if status != 200:
        return f"{url} answered {status} (the service is not classifying)"
    if served not in digests:
        return f"{url} serves the model {served[:12] or '?'}, not one of the new release's"
    return None


def _digest(artifact: Path) -> str:
    try:
        return str(json.loads((artifact / "edgecnn.json").read_text())["integrity"]["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def healthy(txn: Transaction, since: float) -> str | None:
    """Within the grace period: None when healthy, else why not (no health line from a process started after
    ``since``; /healthz not 200 with the new release's model; or the check command failed)."""
    deadline = time.monotonic() + txn.grace
    if txn.healthz:
        folder = Path(txn.to) / "current"
        while (why := serving(txn.healthz, folder.resolve())) is not None:
            if time.monotonic() >= deadline:
                return f"{why} within {txn.grace:g} s"
            time.sleep(0.25)
    if txn.health:
        while service_started(txn.health) <= since:
            if time.monotonic() >= deadline:
                return f"no new line in the health log {txn.health} within {txn.grace:g} s (the service is not classifying)"
            time.sleep(0.2)
    elif not (txn.check or txn.healthz):
        time.sleep(txn.grace)
    if txn.check:
        try:
            proc = subprocess.run(["/bin/sh", "-c", txn.check], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "the check command did not finish within 120 s"
        if proc.returncode != 0:
            return f"the check command exited with status {proc.returncode}"
    return None


def prune(to: Path, keep: int, journal: Journal) -> list[str]:
    """The releases beyond the newest ``keep`` (never current or previous, nor one copied for a deploy still to come)
    and .part folders of copies that died; only names deploy makes are touched."""
    releases = to / "releases"
    protected = {read_link(to, "current"), read_link(to, "previous")}
    ours = [p for p in releases.iterdir() if RELEASE_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    ours.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    pending = _pending(ours, journal)
    gone = [p for p in ours[keep:] if f"releases/{p.name}" not in protected and p.name not in pending]
    stale = [p for p in releases.iterdir() if PART_NAME.fullmatch(p.name) and time.time() - p.stat().st_mtime > STALE_PART_S]
    for p in gone + stale:
        shutil.rmtree(p, ignore_errors=True)
    return [f"releases/{p.name}" for p in gone]


def _pending(releases: list[Path], journal: Journal) -> set[str]:
    """The releases copied within the hour that no transaction has finished with: each waits for its own deploy."""
    records = journal.records()
    ended = {r.get("id") for r in records if r.get("step") == "end"}
    settled = {Path(str(r.get("release"))).name for r in records if r.get("step") == "verifying" and r.get("id") in ended}
    return {p.name for p in releases if p.name not in settled and time.time() - p.stat().st_mtime < STALE_PART_S}


# -- the transaction --------------------------------------------------------------------------------------------------


def verify_release(folder: Path, trust_key: str | None) -> list[str]:
    """The board's own check of a release: hashes, one conversion, the signature (set and artifacts) with a key, and
    the self-check on this board's runtime; one line per artifact. A release none of whose artifacts can run here
    is refused."""
    from edgecnn.errors import MissingDependencyError
    from edgecnn.runtime import Classifier, selfcheck
    from edgecnn.runtime.base import RUNTIMES
    from edgecnn.runtime.select import load_artifact_set
    from edgecnn.signing import verify_folder

    manifests = load_artifact_set(folder)
    if trust_key:
        verify_folder(folder, trust_key)
    lines = []
    for m in manifests:
        runtime = next(name for name in RUNTIMES if m.format in RUNTIMES.get(name).formats)
        try:
            clf = Classifier(m.directory, runtime=runtime, allow_fallback=False)
        except MissingDependencyError:
            continue
        with clf:
            result = selfcheck.run(clf)
        if not result.passed:
            raise ArtifactError(f"{m.directory.name}: {result.line()}: this board computes other answers than the host did")
        lines.append(f"{m.directory.name}: {result.line()}")
    if not lines:
        raise ArtifactError(f"no artifact of {folder.name} can run on this board (no runtime for its formats is installed)")
    return lines


def run(txn: Transaction) -> dict[str, Any]:
    """Carry out ``txn`` here under TO's lock, finishing any transaction a crash left half-done first; every step
    goes to the journal, and the last record (``end``) says how it ended. Returns that record."""
    to = Path(txn.to)
    journal = Journal(to)
    journal.write(txn.id, "started")
    try:
        with locked(to, journal, txn.id, wait=txn.wait):
            journal.rotate()
            recover(to, journal, exclude=txn.id)
            return _switch(to, journal, txn)
    except EdgeCNNError as exc:
        return journal.write(txn.id, "end", outcome="refused", error=exc.message, hint=exc.hint)


def _switch(to: Path, journal: Journal, txn: Transaction) -> dict[str, Any]:
    current, previous = read_link(to, "current"), read_link(to, "previous")
    target = f"releases/{txn.release}" if txn.release else previous
    folder = release_folder(to, target, "the release" if txn.release else "previous")
    journal.write(txn.id, "verifying", release=target, signature=bool(txn.trust_key))
    lines = verify_release(folder, txn.trust_key)
    journal.write(txn.id, "verified", lines=lines)
    if current == target:
        return journal.write(txn.id, "end", outcome="unchanged", current=current, previous=previous)
    since = time.time()
    journal.write(txn.id, "switching", to=target, **{"from": current}, older=previous, since=since, txn=asdict(txn))
    if current:
        set_link(to, "previous", current)  # previous first: a kill between the two leaves both links valid
    set_link(to, "current", target)
    journal.write(txn.id, "switched", current=target, previous=current)
    return _watch(to, journal, txn, since, {"from": current, "older": previous, "to": target})


def _watch(to: Path, journal: Journal, txn: Transaction, since: float, links: dict[str, Any]) -> dict[str, Any]:
    why = restart(txn.restart)
    journal.write(txn.id, "restarted", error=why)
    why = why or healthy(txn, since)
    if why is None:
        journal.write(txn.id, "healthy")
        pruned = prune(to, txn.keep, journal)
        return journal.write(txn.id, "end", outcome="deployed", current=links["to"], previous=links["from"], pruned=pruned)
    return _roll_back(to, journal, txn, links, why)


def _roll_back(to: Path, journal: Journal, txn: Transaction, links: dict[str, Any], why: str) -> dict[str, Any]:
    """Both links back to what they were before the switch (current first: it is what runs), the service restarted."""
    journal.write(txn.id, "rolling-back", why=why)
    set_link(to, "current", links["from"])
    set_link(to, "previous", links["older"])
    again = restart(txn.restart) if links["from"] else None
    return journal.write(
        txn.id, "end", outcome="rolled-back", why=why, current=links["from"], previous=links["older"], restart_error=again
    )


def recover(to: Path, journal: Journal, *, exclude: str | None = None) -> list[dict[str, Any]]:
    """Finish every transaction that took the lock and never ended (its process died: we hold the lock now). One
    killed before its switch ends as it was; one killed after it keeps the new release if the service came up
    healthy (judged again, from the switch), else rolls back and restarts."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rec in journal.records():
        by_id.setdefault(str(rec.get("id")), []).append(rec)
    ended = []
    for txn_id, recs in by_id.items():
        steps = {r.get("step"): r for r in recs}
        if txn_id == exclude or "end" in steps or "locked" not in steps:
            continue
        ended.append(_finish(to, journal, txn_id, steps))
    return ended


def _finish(to: Path, journal: Journal, txn_id: str, steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    switching = steps.get("switching")
    if switching is None:
        return journal.write(
            txn_id, "end", outcome="interrupted",
            error=f"the board's transaction ended before the switch (its log: {journal.folder}/{txn_id}.log); nothing changed",
        )
    try:
        txn = Transaction(**switching["txn"])
        links = {"from": switching["from"], "older": switching["older"], "to": switching["to"]}
        since = float(switching["since"])
    except (KeyError, TypeError, ValueError):
        return journal.write(txn_id, "end", outcome="interrupted", error="its journal record is unreadable; links left as they are")
    journal.write(txn_id, "recovering", by=os.getpid())
    if "healthy" in steps:
        set_link(to, "current", links["to"])
        set_link(to, "previous", links["from"])
        return journal.write(txn_id, "end", outcome="deployed", current=links["to"], previous=links["from"], recovered=True)
    if "restarted" in steps and not steps["restarted"].get("error"):
        why = healthy(txn, since)  # the service the dead transaction restarted: is it classifying on the new release?
        if why is None:
            set_link(to, "current", links["to"])
            return journal.write(txn_id, "end", outcome="deployed", current=links["to"], previous=links["from"], recovered=True)
    else:
        why = (steps.get("restarted") or {}).get("error") or "interrupted before the service was restarted"
    rec = _roll_back(to, journal, txn, links, f"the deploy was interrupted ({why})")
    return rec | {"recovered": True}


def start(txn: Transaction) -> dict[str, Any]:
    """Run ``txn`` in a process of its own, in a session of its own (a dropped SSH connection, or sshd restarted by
    the restart command, does not stop it); returns at once with its id and pid. ``wait`` False refuses now when
    another transaction holds the lock."""
    to = Path(txn.to)
    if not to.is_dir():
        raise ConfigError(f"{to}: no such folder on the board")
    journal = Journal(to)
    if not txn.wait and not lock_is_free(to):
        with open(journal.folder / "lock", "rb") as f:
            raise _busy(to, _holder(f.fileno()))
    log = open(journal.folder / f"{txn.id}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "release", "run", *txn.argv()],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
    )
    log.close()
    journal.write(txn.id, "queued", child=proc.pid)
    return {"id": txn.id, "pid": proc.pid}


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def follow(to: str | Path, txn_id: str, emit: Any, *, timeout: float = 3600, poll: float = 0.1) -> dict[str, Any] | None:
    """Hand every journal record of ``txn_id`` to ``emit`` as it is written, until its ``end``; a transaction whose
    process died is finished here (``recover``) so the answer always comes. None when ``timeout`` passes first."""
    to = Path(to)
    journal = Journal(to)
    shown = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = journal.records(txn_id)
        for rec in recs[shown:]:
            emit(rec)
            if rec.get("step") == "end":
                return rec
        shown = len(recs)
        if not recs:
            raise ConfigError(f"{to}: no deploy transaction {txn_id!r} in its journal")
        if not any(_alive(int(r.get("child") or r.get("pid") or 0)) for r in recs if r.get("step") in ("queued", "started")):
            _finish_dead(to, journal, txn_id, recs)
        time.sleep(poll)
    return None


def _finish_dead(to: Path, journal: Journal, txn_id: str, recs: list[dict[str, Any]]) -> None:
    """The transaction's process is gone without an end record: finish it under the lock (it never took it, or
    it died holding it)."""
    steps = {r.get("step") for r in recs}
    if "locked" not in steps:
        journal.write(txn_id, "end", outcome="interrupted", error="the transaction's process died before it started")
        return
    with locked(to, journal, f"recover-{txn_id}", wait=True, quiet=True):
        recover(to, journal)


def status(to: str | Path) -> dict[str, Any]:
    """current, previous, the releases there, whether a transaction holds the lock, and the last one's end."""
    to = Path(to)
    releases = sorted(p.name for p in (to / "releases").iterdir() if RELEASE_NAME.fullmatch(p.name)) if (to / "releases").is_dir() else []
    ends = [r for r in Journal(to).records() if r.get("step") == "end"] if to.is_dir() else []
    return {
        "to": str(to),
        "current": read_link(to, "current"),
        "previous": read_link(to, "previous"),
        "releases": releases,
        "busy": to.is_dir() and not lock_is_free(to),
        "last": ends[-1] if ends else None,
    }
