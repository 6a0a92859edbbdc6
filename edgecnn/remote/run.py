"""Measure and verify on a board: copy what is needed into its cache, run its own edgecnn there, bring the answer
back with where it was measured."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError
from edgecnn.profiling.measure import ProfileOptions
from edgecnn.remote import verbs
from edgecnn.remote.transport import Board, Pushed, check_version, push_cached


def _push_model(board: Board, model: Path) -> tuple[str, Pushed]:
    """An artifact folder, a conversion's output folder, or a bare model file (with an OpenVINO .xml, its .bin)."""
    if model.is_dir():
        pushed = push_cached(board, model)
        return pushed.remote, pushed
    if not model.is_file():
        raise ConfigError(f"no such artifact or model file: {model}")
    with tempfile.TemporaryDirectory(prefix="edgecnn-push-") as tmp:
        folder = Path(tmp) / model.stem
        folder.mkdir()
        for part in [model, model.with_suffix(".bin")] if model.suffix == ".xml" else [model]:
            if part.is_file():
                shutil.copy2(part, folder / part.name)
        pushed = push_cached(board, folder)
    return f"{pushed.remote}/{model.name}", pushed


def push_key(board: Board, key: str | Path | None) -> str | None:
    """The public key the board checks signatures with, copied beside the artifacts (by content, like them). Only
    the parsed public key travels, re-encoded: a private key given by mistake is refused before any connection."""
    if key is None:
        return None
    from edgecnn.signing import public_key_pem

    pem = public_key_pem(key)
    with tempfile.TemporaryDirectory(prefix="edgecnn-key-") as tmp:
        folder = Path(tmp) / "trust-key"
        folder.mkdir()
        (folder / "public.pem").write_bytes(pem)
        return f"{push_cached(board, folder).remote}/public.pem"


def profile_on(
    board: Board,
    model: str | Path,
    opts: ProfileOptions,
    *,
    device: str | None = None,
    runtime: str | None = None,
    self_check: bool = True,
    trust_key: str | Path | None = None,
) -> dict[str, Any]:
    """The board's own ``edgecnn profile`` of ``model`` (copied into its cache first; ``verbs.profile``); the
    result gains ``measured_on`` (the board, and what the copy cost: nothing when the artifact was in its cache)."""
    version = check_version(board)
    remote, pushed = _push_model(board, Path(model))
    key = push_key(board, trust_key)
    result = verbs.profile(board, remote, opts, device=device, runtime=runtime, self_check=self_check, trust_key=key)
    result["measured_on"] = {
        "board": board.label,
        "url": board.url,
        "edgecnn": version,
        "remote_path": remote,
        "copy": {"copied": pushed.copied, "method": pushed.method, "seconds": round(pushed.seconds, 3)},
    }
    return result


def verify_on(
    board: Board,
    artifact: str | Path,
    *,
    run: bool,
    trust_key: str | Path | None = None,
    on_record: Callable[[dict[str, Any]], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """The board's own ``edgecnn verify`` of ``artifact`` (copied into its cache first; ``verbs.verify``): the
    records of what it checked, each handed to ``on_record`` as well; its error raised after them."""
    check_version(board)
    remote, _ = _push_model(board, Path(artifact))
    key = push_key(board, trust_key)
    return verbs.verify(board, remote, run=run, trust_key=key, on_record=on_record)
