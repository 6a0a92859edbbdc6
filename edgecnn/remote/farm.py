"""The fleet as a benchmark farm: the same artifacts measured on every board at once.

Boards run in parallel (at most ``PARALLEL``); on each board the artifacts are measured one after the other, so no
two measurements share a board's CPU. A board that fails (unreachable, no runtime for a format) marks its cells with
the reason and does not stop the others. Every measurement is saved as the board's own profile JSON, which
``edgecnn report`` compares across boards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgeCNNError
from edgecnn.profiling.measure import ProfileOptions
from edgecnn.remote.fleet import PARALLEL
from edgecnn.remote.run import profile_on
from edgecnn.remote.transport import Board, check_version

Cell = dict[str, Any]  # {"state": "waiting"|"measuring"|"done"|"error", "p50_ms": ..., "error": ..., "file": ...}


def measure_fleet(
    boards: list[Board],
    artifacts: list[tuple[str, Path, str]],
    out: Path,
    *,
    runs: int,
    seconds: float,
    on_change: Callable[[dict[str, dict[str, Cell]]], None] = lambda _: None,
) -> dict[str, dict[str, Cell]]:
    """``artifacts``: (name, folder, runtime). Returns board -> artifact -> cell; ``on_change`` sees every update."""
    cells = {b.label: {name: {"state": "waiting"} for name, _, _ in artifacts} for b in boards}
    lock = threading.Lock()

    def update(board: Board, name: str | None, **cell: Any) -> None:
        with lock:
            for key in [name] if name else list(cells[board.label]):
                if name or cells[board.label][key]["state"] in ("waiting", "measuring"):
                    cells[board.label][key] = dict(cell)
            on_change(cells)

    def one_board(board: Board) -> None:
        try:
            check_version(board)
        except EdgeCNNError as exc:
            update(board, None, state="error", error=exc.message)
            return
        folder = out / "boards" / board.label.replace("/", "_").replace(":", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for name, path, runtime in artifacts:
            update(board, name, state="measuring")
            try:
                p = profile_on(board, path, ProfileOptions(runs=runs, min_seconds=seconds), runtime=runtime, device=board.device)
            except EdgeCNNError as exc:
                update(board, name, state="error", error=exc.message)
                continue
            file = folder / f"{name}.json"
            file.write_text(json.dumps(p, indent=1, default=str))
            update(board, name, state="done", p50_ms=p["invoke"]["p50"], p90_ms=p["invoke"]["p90"], file=str(file))

    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(boards)))) as pool:
        list(pool.map(one_board, boards))
    return cells


def cell_text(cell: Cell) -> str:
    if cell["state"] == "done":
        return f"{cell['p50_ms']:.3f}"
    if cell["state"] == "error":
        return "error"
    return cell["state"]
