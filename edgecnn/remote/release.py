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

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ArtifactError, ConfigError, EdgeCNNError
from edgecnn.remote.journal import Journal, lock_is_free, locked, refuse_if_busy
from edgecnn.remote.watch import healthy, restart

RELEASE_NAME = re.compile(r"[0-9a-f]{16}")
PART_NAME = re.compile(r"[0-9a-f]{16}\.part-[0-9a-f]{8}")
STALE_PART_S = 3600


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
    from edgecnn.formats import Format, runtime_for
    from edgecnn.runtime import Classifier, selfcheck
    from edgecnn.runtime.select import load_artifact_set
    from edgecnn.signing import verify_folder

    manifests = load_artifact_set(folder)
    if trust_key:
        verify_folder(folder, trust_key)
    lines = []
    for m in manifests:
        runtime = runtime_for(m.format)
        try:
            clf = Classifier(m.directory, runtime=runtime, allow_fallback=False)
        except MissingDependencyError:
            continue
        with clf:
            result = selfcheck.run(clf)
        if not result.passed:
            raise ArtifactError(f"{m.directory.name}: {result.line()}: this board computes other answers than the host did")
        lines.append(f"{m.directory.name}: {result.line()}")
        if m.format == Format.IMX500:  # the sensor's network.rpk, made here (remote/imx500.py)
            from edgecnn.remote.imx500 import package

            lines.append(f"{m.directory.name}: network.rpk at {package(m.directory)['rpk']}")
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
    if not txn.wait:
        refuse_if_busy(to, journal)
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
