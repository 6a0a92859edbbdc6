"""Deploy an artifact folder to a board so that it is never left without a working model.

On the board, under ``TO``::

    releases/<digest>/   each deployed folder, named by its content (a repeat copies nothing)
    current -> releases/<digest>     what the service runs (point it at TO/current)
    previous -> releases/<digest>    what --rollback goes back to

Steps: copy into ``releases/`` (a ``.part`` folder renamed when whole); verify there with the board's own edgecnn
(hashes, the signature when a key is given, the self-check on the board's runtime; a release none of whose
artifacts can run there is refused); switch ``current`` in one rename; run the restart command; watch the service's
health log for a grace period; if the restart fails or the log does not move, switch back and restart the previous
release. Any failure before the switch leaves the current deployment as it was.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.remote.run import push_key
from edgecnn.remote.transport import Board, RemoteError, check_version, folder_digest, push, run_edgecnn, ssh

KEEP_DEFAULT = 3


def _q(text: str) -> str:
    return shlex.quote(text)


def _link(board: Board, to: str, name: str, target: str | None) -> None:
    """Point ``to/name`` at ``target`` (relative) in one rename; None removes the link."""
    if target is None:
        ssh(board, f"rm -f {_q(f'{to}/{name}')}", step=f"switch {name}")
        return
    tmp = f"{to}/.{name}.new"
    ssh(board, f"ln -sfn {_q(target)} {_q(tmp)} && mv -T {_q(tmp)} {_q(f'{to}/{name}')}", step=f"switch {name}")


def _readlink(board: Board, to: str, name: str) -> str | None:
    out = ssh(board, f"readlink {_q(f'{to}/{name}')} || true", step=f"read {name}").stdout.strip()
    return out or None


def _board_time(board: Board) -> float:
    return float(ssh(board, "date +%s.%N", step="watch health").stdout.strip() or 0)


def _service_started(board: Board, health: str) -> float:
    """When the process that wrote the health log's last line started (its ``time`` less its ``t_s``, the board's
    clock); 0 when there is no line yet, or the last line is a stopped process's final one (``ended_by``). Only a
    process started after the switch, and still classifying, makes the release healthy."""
    import json

    out = ssh(board, f"tail -n 1 {_q(health)} 2>/dev/null || true", step="watch health").stdout.strip()
    try:
        line = json.loads(out) if out else {}
        return 0.0 if "ended_by" in line else float(line["time"]) - float(line["t_s"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0.0


def _restart(board: Board, command: str | None) -> str | None:
    """Run the restart command; the reason it failed, or None."""
    if not command:
        return None
    proc = ssh(board, command, step="restart", timeout=300, check=False)
    if proc.returncode == 255 and not proc.stdout:
        raise RemoteError(f"{board.label}: restart: the connection failed ({proc.stderr.strip()[:200]})")
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        return f"the restart command exited with status {proc.returncode}" + (f" ({last[-1][:200]})" if last else "")
    return None


def _healthy(board: Board, health: str | None, since: float, grace: float, check: str | None) -> str | None:
    """Within ``grace`` seconds: None when healthy, else why not (no health line written after ``since``, the board's
    clock at the switch; or the check command failed)."""
    deadline = time.monotonic() + grace
    while health and time.monotonic() < deadline:
        if _service_started(board, health) > since:
            break
        time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))
    else:
        if health:
            return f"no new line in the health log {health} within {grace:g} s (the service is not classifying)"
        time.sleep(grace)
    if check:
        proc = ssh(board, check, step="check", timeout=120, check=False)
        if proc.returncode != 0:
            return f"the check command exited with status {proc.returncode}"
    return None


def deploy(
    board: Board,
    artifact: str | Path,
    to: str,
    *,
    restart: str | None = None,
    health: str | None = None,
    check: str | None = None,
    grace: float = 10.0,
    trust_key: str | Path | None = None,
    keep: int = KEEP_DEFAULT,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Stage, verify, switch, restart, watch; roll back on an unhealthy restart. Returns what happened."""
    artifact = Path(artifact)
    t0 = time.monotonic()
    check_version(board)
    releases = f"{to}/releases"
    ssh(board, f"mkdir -p {_q(releases)}", step=f"create {releases}")
    name = folder_digest(artifact)[:16]
    say(f"copying {artifact} to {board.label}:{releases}/{name}")
    pushed = push(board, artifact, releases, name)
    release = pushed.remote
    _verify_release(board, release, trust_key, say)
    previous = _readlink(board, to, "current")
    if previous == f"releases/{name}":
        say(f"{board.label} already runs this release; restarting nothing")
        return {"board": board.label, "release": name, "switched": False, "seconds": time.monotonic() - t0}
    since = _board_time(board) if health else 0.0
    older = _readlink(board, to, "previous")  # what --rollback went back to before this deploy, restored if it fails
    _link(board, to, "current", f"releases/{name}")
    if previous:
        _link(board, to, "previous", previous)
    say(f"switched {to}/current -> releases/{name}" + (f" (previous: {previous})" if previous else ""))
    why = _restart(board, restart) or _healthy(board, health, since, grace, check)
    report = {"board": board.label, "release": name, "previous": previous, "copied": pushed.copied, "switched": True}
    if why:
        say(f"unhealthy: {why}; rolling back")
        _roll_back_unhealthy(board, to, name, (previous, older), restart, why)
    pruned = _prune(board, to, keep, {f"releases/{name}", previous})
    report |= {"pruned": pruned, "seconds": round(time.monotonic() - t0, 2)}
    return report


def _verify_release(board: Board, release: str, trust_key: str | Path | None, say: Callable[[str], None]) -> None:
    """The board's edgecnn checks the copy it holds: hashes, the signature, the self-check on its runtime."""
    key = push_key(board, trust_key)
    say(f"verifying {release} on {board.label} (hashes{', signature' if key else ''}, self-check on its runtime)")
    proc = run_edgecnn(board, ["verify", release, "--run", *(["--trust-key", key] if key else [])], step="verify")
    if proc.returncode != 0:
        reason = next((ln for ln in proc.stderr.splitlines() if ln.startswith("error:")), proc.stderr.strip()[-300:])
        raise RemoteError(
            f"{board.label}: deploy stopped before the switch: the release fails verification there: "
            f"{reason.removeprefix('error: ')}; the current deployment is untouched"
        )


def _roll_back_unhealthy(
    board: Board, to: str, name: str, links: tuple[str | None, str | None], restart: str | None, why: str
) -> None:
    """``current`` back to what it was (or removed when there was none) and ``previous`` too, so a later
    ``--rollback`` goes where it would have gone before this deploy; the service restarted; always raises."""
    previous, older = links
    _link(board, to, "current", previous)
    if older:
        _link(board, to, "previous", older)
    elif previous:
        ssh(board, f"rm -f {_q(f'{to}/previous')}", step="roll back", check=False)
    again = _restart(board, restart) if previous else None
    back = f"rolled back to {previous}" if previous else "no previous release: current removed"
    raise RemoteError(
        f"{board.label}: the new release {name} was unhealthy ({why}); {back}"
        + (f"; the restart after the rollback also failed: {again}" if again else ""),
        hint="the release stays in releases/ for inspection; edgecnn verify --run --on the board tells more",
    )


def rollback(board: Board, to: str, *, restart: str | None = None, say: Callable[[str], None] = lambda _: None) -> dict:
    """Switch ``current`` back to ``previous`` (and ``previous`` to what was current), then restart."""
    current, previous = _readlink(board, to, "current"), _readlink(board, to, "previous")
    if not previous:
        raise RemoteError(f"{board.label}: nothing to roll back to: {to}/previous does not exist")
    _link(board, to, "current", previous)
    _link(board, to, "previous", current)
    say(f"switched {to}/current -> {previous}")
    why = _restart(board, restart)
    if why:
        raise RemoteError(f"{board.label}: rolled back to {previous}, but {why}")
    return {"board": board.label, "current": previous, "previous": current}


def _prune(board: Board, to: str, keep: int, protected: set[str | None]) -> list[str]:
    """Remove all but the newest ``keep`` releases (never current or previous)."""
    out = ssh(board, f"cd {_q(to)} && ls -1t releases", step="prune").stdout.split()
    old = [f"releases/{n}" for n in out if ".part-" not in n][keep:]
    gone = [r for r in old if r not in protected]
    if gone:
        ssh(board, "cd " + _q(to) + " && rm -rf " + " ".join(_q(r) for r in gone), step="prune")
    return gone
