"""fleet.yaml: the boards a user owns, by name, and what ``edgecnn fleet`` says of each.

```yaml
boards:
  pi-kitchen:
    url: ssh://pi@192.168.1.23
    device: rpi4                          # its device profile
    edgecnn: /home/pi/venv/bin/edgecnn    # default: edgecnn on its PATH
    labels: [kitchen, camera]
```
The file is ``$EDGECNN_FLEET``, else ``~/.config/edgecnn/fleet.yaml``; unknown keys are errors, as in recipes.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError, EdgeCNNError
from edgecnn.remote import verbs
from edgecnn.remote.transport import DEFAULT_CACHE, Board, check_version, parse_board, ssh

_KEYS = {"url", "device", "edgecnn", "cache", "ssh_config", "labels"}
PARALLEL = 8  # boards asked at once


def fleet_path(path: str | Path | None = None) -> Path:
    if path:
        return Path(path)
    if os.environ.get("EDGECNN_FLEET"):
        return Path(os.environ["EDGECNN_FLEET"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "edgecnn" / "fleet.yaml"


def load_fleet(path: str | Path | None = None, *, required: bool = False) -> dict[str, Board]:
    """The boards of fleet.yaml by name; {} when there is no file (unless ``required``)."""
    from edgecnn.config import read_yaml

    file = fleet_path(path)
    if not file.is_file():
        if required or path:
            raise ConfigError(f"no fleet file at {file}", hint="write one (README: Boards over SSH), or pass --fleet-file")
        return {}
    data = read_yaml(file) or {}
    if not isinstance(data, dict) or set(data) - {"boards"}:
        raise ConfigError(
            f"{file}: the top level holds one key, 'boards'; received {sorted(data) if isinstance(data, dict) else data!r}"
        )
    boards = data.get("boards") or {}
    if not isinstance(boards, dict):
        raise ConfigError(f"{file}: boards: a mapping of board names to entries; received {type(boards).__name__}")
    return {str(name): _board(str(name), entry, f"{file}: boards.{name}") for name, entry in boards.items()}


def _board(name: str, entry: Any, where: str) -> Board:
    """One fleet.yaml entry, checked key by key."""
    from edgecnn.registry import did_you_mean

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}: a board name is letters, digits, '.', '_' and '-'")
    if not isinstance(entry, dict) or "url" not in entry:
        raise ConfigError(f"{where}: needs at least 'url: ssh://[user@]host[:port]'")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}", hint=did_you_mean(unknown[0], sorted(_KEYS)))
    labels = entry.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise ConfigError(f"{where}.labels: a list of words; received {labels!r:.80}")
    from edgecnn.untrusted import expect

    expect(entry["url"], str, f"{where}.url", error=ConfigError)
    for key in ("device", "edgecnn", "cache", "ssh_config"):
        if entry.get(key) is not None:
            expect(entry[key], str, f"{where}.{key}", error=ConfigError)
    if not str(entry["url"]).startswith("ssh://"):
        raise ConfigError(f"{where}.url: write ssh://[user@]host[:port]; received {entry['url']!r}")
    return Board(
        url=parse_board(str(entry["url"])).url,
        name=name,
        device=entry.get("device"),
        edgecnn=str(entry.get("edgecnn") or "edgecnn"),
        cache=str(entry.get("cache") or DEFAULT_CACHE),
        ssh_config=entry.get("ssh_config"),
        labels=tuple(labels),
    )


def board_status(board: Board) -> dict[str, Any]:
    """Reachable?, its edgecnn and runtime versions, its detected profile, and throttling on a Pi."""
    status: dict[str, Any] = {"board": board.label, "url": board.url, "device": board.device, "labels": list(board.labels)}
    try:
        status["edgecnn"] = check_version(board)
        status["detected"] = verbs.detect(board).get("profile")
        probe = ssh(
            board,
            "python3 -c 'import platform; print(platform.machine())' 2>/dev/null || uname -m; "
            "command -v vcgencmd >/dev/null && vcgencmd get_throttled || echo throttled=n/a",
            step="system",
            timeout=60,
        )
        lines = probe.stdout.split()
        status["arch"] = lines[0] if lines else None
        status["throttled"] = next((ln.split("=", 1)[1] for ln in lines if ln.startswith("throttled=")), None)
        status["reachable"] = True
    except EdgeCNNError as exc:
        status |= {"reachable": False, "error": exc.message}
    return status


def fleet_status(boards: list[Board]) -> list[dict[str, Any]]:
    """Every board asked at once (at most PARALLEL); one unreachable board does not hold up the others."""
    if not boards:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(boards))) as pool:
        return list(pool.map(board_status, boards))
