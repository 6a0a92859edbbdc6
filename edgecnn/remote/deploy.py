"""Deploy an artifact folder to a board so that it is never left without a working model.

The host prepares and asks; the board decides. Here, before any connection: the trust key must be one public key,
the folder must hold plain files only (a link, device or FIFO is refused by name), and with a key the folder must
verify as a signed set, so nothing unlisted travels; then exactly the verified files are staged and copied into
``TO/releases/<digest>`` (a ``.part`` folder renamed when whole). On the board, ``edgecnn release`` runs the rest as
one locked transaction in a process of its own (``edgecnn.remote.release``): verify and self-check there, switch
``previous`` then ``current``, restart, watch the health log, commit or roll back. The host follows the board's
journal and, when the connection drops (a restart that kills sshd, a reboot, a network cut), reconnects and reports
how the board ended, which it does whether or not the host comes back.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecnn.remote import verbs
from edgecnn.remote.run import push_key
from edgecnn.remote.transport import Board, RemoteError, check_version, connect, folder_digest, push, remote_path

KEEP_DEFAULT = 3
RECONNECT_S = 300.0  # how long the host keeps trying to hear how the board ended


@contextmanager
def staged_release(artifact: Path, trust_key: str | Path | None) -> Iterator[Path]:
    """A private copy of exactly the files of ``artifact`` (plain files only, checked by name), verified as a signed
    set when a key is given: what is verified is what travels."""
    from edgecnn.signing import public_key_pem, set_files

    if trust_key is not None:
        public_key_pem(trust_key)
    files = set_files(artifact)
    from edgecnn.atomic import temporary_directory

    with temporary_directory("edgecnn-release-") as tmp:  # removed also when a signal stops deploy
        stage = Path(tmp) / artifact.name
        stage.mkdir()
        for f in files:
            dst = stage / f.relative_to(artifact)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst, follow_symlinks=False)
        if trust_key is not None:
            _verify_here(stage, artifact, trust_key)
        yield stage


def _verify_here(stage: Path, artifact: Path, trust_key: str | Path) -> None:
    """The signed set checked on the host before anything moves (where model-signing is installed here; the board
    checks again in any case)."""
    from edgecnn.errors import ArtifactError, MissingDependencyError
    from edgecnn.signing import verify_folder

    try:
        verify_folder(stage, trust_key)
    except MissingDependencyError:
        return
    except ArtifactError as exc:
        raise RemoteError(
            f"deploy refused before any copy: {exc.message.replace(str(stage), str(artifact))}", hint=exc.hint
        ) from None


def deploy(
    board: Board,
    artifact: str | Path,
    to: str,
    *,
    restart: str | None = None,
    health: str | None = None,
    check: str | None = None,
    healthz: str | None = None,
    grace: float = 10.0,
    trust_key: str | Path | None = None,
    keep: int = KEEP_DEFAULT,
    wait: bool = True,
    reconnect: float = RECONNECT_S,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Stage, copy, and have the board verify, switch, restart, watch and commit or roll back. Returns what happened;
    raises RemoteError when the board refused the release or rolled it back."""
    artifact = Path(artifact)
    t0 = time.monotonic()
    with staged_release(artifact, trust_key) as stage:
        check_version(board)
        to = remote_path(board, to)
        name = folder_digest(stage)[:16]
        say(f"copying {artifact} to {board.label}:{to}/releases/{name}")
        pushed = push(board, stage, f"{to}/releases", name)
    key = push_key(board, trust_key)
    options = verbs.release_options(release=name, grace=grace, keep=keep, wait=wait, restart=restart, health=health,
                                    check=check, healthz=healthz, trust_key=key)
    end = _transact(board, to, options, say, reconnect)
    report = _report(board, name, end, to) | {"copied": pushed.copied, "seconds": round(time.monotonic() - t0, 2)}
    return report


def rollback(
    board: Board,
    to: str,
    *,
    restart: str | None = None,
    health: str | None = None,
    check: str | None = None,
    healthz: str | None = None,
    grace: float = 0.0,
    trust_key: str | Path | None = None,
    wait: bool = True,
    reconnect: float = RECONNECT_S,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Switch ``current`` back to ``previous`` (checked: it exists and verifies there) as one board transaction."""
    if trust_key is not None:
        from edgecnn.signing import public_key_pem

        public_key_pem(trust_key)
    check_version(board)
    to = remote_path(board, to)
    key = push_key(board, trust_key)
    options = verbs.release_options(rollback=True, grace=grace, wait=wait, restart=restart, health=health, check=check,
                                    healthz=healthz, trust_key=key)
    end = _transact(board, to, options, say, reconnect)
    return _report(board, None, end, to)


def _transact(board: Board, to: str, options: list[str], say: Callable[[str], None], reconnect: float) -> dict[str, Any]:
    """Start the board's transaction and follow its journal to its end, reconnecting when the link drops."""
    txn = secrets.token_hex(6)
    verbs.release_start(board, to, txn, options)
    say(f"the board runs the deploy itself now (transaction {txn}); following it")
    return _follow(board, to, txn, say, reconnect)


def _follow(board: Board, to: str, txn: str, say: Callable[[str], None], reconnect: float) -> dict[str, Any]:
    seen: set[str] = set()  # a reconnected follow replays the journal from its start
    end: dict[str, Any] = {}

    def on_record(rec: dict[str, Any]) -> None:
        key = json.dumps(rec, sort_keys=True)
        if key in seen:
            return
        seen.add(key)
        text = describe(rec)
        if text:
            say(text)
        if rec.get("step") == "end":
            end.update(rec)

    lost_at: float | None = None
    delay = 1.0
    while not end:
        verbs.release_follow(board, to, txn, on_record)  # raises the board's own error; returns when the link drops
        if end:
            break
        lost_at = lost_at or time.monotonic()
        if time.monotonic() - lost_at > reconnect:
            raise RemoteError(
                f"{board.label}: lost the connection during the deploy and could not reach the board again within "
                f"{reconnect:g} s; the board finishes (or rolls back) by itself",
                hint=f"edgecnn deploy --status --to {to} --on {board.label} tells how it ended",
            )
        say(f"lost the connection to {board.label}; the board carries on by itself; reconnecting in {delay:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 10.0)
        try:
            connect(board)
        except RemoteError:
            continue
    return end


_SAY = {
    "waiting": lambda r: f"waiting for the board's lock: {r.get('holder')}",
    "verifying": lambda r: f"verifying {r.get('release')} on the board (hashes, {'signature, ' if r.get('signature') else ''}"
    "self-check on its runtime)",
    "switching": lambda r: f"switching current -> {r.get('to')} (previous: {r.get('from')})",
    "restarted": lambda r: f"restart failed: {r['error']}" if r.get("error") else "restarted; watching its health",
    "healthy": lambda r: "healthy",
    "rolling-back": lambda r: f"unhealthy: {r.get('why')}; rolling back",
    "recovering": lambda r: "finishing a transaction that was interrupted",
}


def describe(rec: dict[str, Any]) -> str | None:
    """One journal record as a progress line (None for those not worth a line)."""
    fn = _SAY.get(str(rec.get("step")))
    return fn(rec) if fn else None


def _report(board: Board, name: str | None, end: dict[str, Any], to: str) -> dict[str, Any]:
    outcome = end.get("outcome")
    report = {"board": board.label, "to": to, "outcome": outcome, "current": end.get("current"), "previous": end.get("previous")}
    if name:
        report["release"] = name
    if outcome in ("deployed", "unchanged"):
        return report | {"switched": outcome == "deployed", "pruned": end.get("pruned", []), "recovered": bool(end.get("recovered"))}
    if outcome == "rolled-back":
        back = f"rolled back to {end.get('current')}" if end.get("current") else "no previous release: current removed"
        again = end.get("restart_error")
        raise RemoteError(
            f"{board.label}: the new release {name or ''} was unhealthy ({end.get('why')}); {back}"
            + (f"; the restart after the rollback also failed: {again}" if again else ""),
            hint="the release stays in releases/ for inspection; edgecnn verify --run --on the board tells more",
        )
    error = str(end.get("error") or "the board gave no reason")
    if name:
        error = f"deploy stopped before the switch: {error}; the current deployment is untouched"
    raise RemoteError(f"{board.label}: {error}", hint=end.get("hint"))


def status(board: Board, to: str) -> dict[str, Any]:
    """The board's deploy folder: current, previous, releases, whether a deploy is under way, how the last ended."""
    check_version(board)
    to = remote_path(board, to)
    return verbs.release_status(board, to)
