"""The board's edgecnn, called from the host: one typed function per verb the remote side runs there.

Each function builds its verb's argv here, once, and gets its answer as JSON: the verb's result on stdout (one
object, or one object a line), and an error as the one JSON object ``edgecnn --json-errors`` writes on stderr
(``{"error": {"type", "message", "hint", "exit"}}``), raised as a ``BoardError`` that keeps its type. Nothing
here reads ``error:`` lines: a board whose edgecnn fails without that object (not edgecnn, or one that crashed) is
named as such, with the last line it wrote (cleaned of control characters, as everything a board sends is).

    profile(board, model, ProfileOptions(runs=50), runtime="litert") -> the board's profile result
    verify(board, artifact, run=True, on_record=print)               -> the records it checked
    detect(board)                                                    -> {"profile", "reason", ...}
    release_start / release_follow / release_status                  -> the deploy transaction on the board
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from edgecnn.profiling.measure import ProfileOptions
from edgecnn.remote.transport import Board, RemoteError, run_edgecnn, stream_edgecnn
from edgecnn.untrusted import clean, clean_json, loads

JSON_ERRORS = "--json-errors"  # the board's edgecnn option (edgecnn.cli.JSON_ERRORS) every call here passes


class BoardError(RemoteError):
    """The board's edgecnn refused or failed: its own error, with its type (``ConfigError``, ...) kept."""

    def __init__(self, message: str, *, hint: str | None = None, kind: str = "", exit_code: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.exit_code = exit_code


def board_argv(verb: str, *args: str) -> list[str]:
    """``--json-errors VERB ARGS``: what follows the board's edgecnn command in every call."""
    return [JSON_ERRORS, verb, *args]


def json_error(stderr: str) -> dict[str, Any] | None:
    """The ``{"type", "message", "hint", "exit"}`` that ``edgecnn --json-errors`` wrote last on ``stderr`` (cleaned),
    or None when it wrote none."""
    for line in reversed([ln for ln in stderr.splitlines() if ln.strip()]):
        try:
            found = loads(line, "the error", error=RemoteError)
        except RemoteError:
            continue
        error = found.get("error") if isinstance(found, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            error = clean_json(error)
            return error | {"hint": error.get("hint") if isinstance(error.get("hint"), str) else None}
    return None


def error_from(board: Board, step: str, code: int, stderr: str) -> RemoteError:
    """The board's JSON error object as a BoardError; without one, what the board did say, as one RemoteError."""
    error = json_error(stderr)
    if error is not None:
        return BoardError(f"{board.label}: {step}: {error['message'][:1000]}", hint=error["hint"],
                          kind=str(error.get("type") or ""), exit_code=code)
    lines = [ln.strip() for ln in clean(stderr).splitlines() if ln.strip()]
    said = f": {lines[-1][:500]}" if lines else " and said nothing"
    return RemoteError(
        f"{board.label}: {step}: the board's edgecnn failed (exit {code}) without edgecnn's JSON error{said}",
        hint="is --remote-edgecnn the board's edgecnn, of this version? edgecnn board install sets one up",
    )


def call(board: Board, verb: str, *args: str, step: str | None = None, timeout: float = 1800) -> str:
    """Run the board's ``edgecnn VERB ARGS``; its stdout (cleaned) when it succeeds, else its error raised."""
    step = step or verb
    proc: subprocess.CompletedProcess = run_edgecnn(board, board_argv(verb, *args), step=step, timeout=timeout)
    if proc.returncode != 0:
        raise error_from(board, step, proc.returncode, proc.stderr or "")
    return proc.stdout


def call_json(board: Board, verb: str, *args: str, step: str | None = None, timeout: float = 1800) -> dict[str, Any]:
    """``call`` for a verb that answers one JSON object."""
    step = step or verb
    answer = loads(call(board, verb, *args, step=step, timeout=timeout), f"{board.label}: {step}: the board's answer",
                   error=RemoteError)
    if not isinstance(answer, dict):
        raise RemoteError(f"{board.label}: {step}: the board's edgecnn did not answer with a JSON object: {str(answer)[:200]!r}")
    return clean_json(answer)


def json_lines(board: Board, step: str, text: str) -> list[dict[str, Any]]:
    """Every JSON object line of a board's answer (other lines are not ours: a library's output)."""
    out = []
    for line in text.splitlines():
        try:
            rec = loads(line, f"{board.label}: {step}", error=RemoteError)
        except RemoteError:
            continue
        if isinstance(rec, dict):
            out.append(clean_json(rec))
    return out


# -- the verbs --------------------------------------------------------------------------------------------------------


def profile_argv(
    model: str,
    opts: ProfileOptions,
    *,
    device: str | None = None,
    runtime: str | None = None,
    self_check: bool = True,
    trust_key: str | None = None,
) -> list[str]:
    """``profile MODEL ...`` for the board: the one place its options are spelled (``--json --with-samples``: the
    result comes back whole, its samples included)."""
    argv = [model, *(["--device", device] if device else []), *(["--runtime", runtime] if runtime else [])]
    argv += ["--threads", str(opts.threads)] if opts.threads else []
    argv += ["--runs", str(opts.runs), "--min-seconds", f"{opts.min_seconds:g}", "--warmup", str(opts.warmup)]
    argv += ["--batch", str(opts.batch)]
    argv += ["--input-shape", ",".join(map(str, opts.input_shape))] if opts.input_shape else []
    argv += [] if self_check else ["--skip-self-check"]
    argv += ["--trust-key", trust_key] if trust_key else []
    return [*argv, "--json", "--with-samples"]


def profile(board: Board, model: str, opts: ProfileOptions, **choices: Any) -> dict[str, Any]:
    """The board's ``edgecnn profile`` of ``model`` (a path there): its result. ``choices``: device, runtime,
    self_check, trust_key (a path there), as ``profile_argv`` takes them."""
    return call_json(board, "profile", *profile_argv(model, opts, **choices))


def verify(
    board: Board,
    artifact: str,
    *,
    run: bool,
    trust_key: str | None = None,
    on_record: Callable[[dict[str, Any]], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """The board's ``edgecnn verify --json`` of ``artifact`` (a path there): the records of what it checked
    (kind: set, artifact, run, self-check, skipped; each with its ``text``), each handed to ``on_record`` first;
    an error there is raised after the records that came before it."""
    argv = [artifact, *(["--run"] if run else []), *(["--trust-key", trust_key] if trust_key else []), "--json"]
    proc = run_edgecnn(board, board_argv("verify", *argv), step="verify")
    records = json_lines(board, "verify", proc.stdout)
    for rec in records:
        on_record(rec)
    if proc.returncode != 0:
        raise error_from(board, "verify", proc.returncode, proc.stderr or "")
    return records


def detect(board: Board) -> dict[str, Any]:
    """The board's ``edgecnn devices --detect``: the profile it matches, and why."""
    return call_json(board, "devices", "--detect", "--json", step="devices --detect", timeout=120)


def release_start(board: Board, to: str, txn: str, options: list[str]) -> dict[str, Any]:
    """Start the board's deploy transaction ``txn`` in ``to`` (``options``: release_options'); {"id", "pid"}."""
    return call_json(board, "release", "start", "--to", to, "--id", txn, *options, step="start the deploy", timeout=120)


def release_options(*, release: str | None = None, rollback: bool = False, grace: float, keep: int | None = None,
                    wait: bool = True, **watch: str | None) -> list[str]:
    """The transaction's options: ``--release NAME`` or ``--rollback``, ``--grace``, ``--keep``, the watch options
    given (restart, health, check, healthz, trust_key), and ``--no-wait``."""
    out = ["--release", release] if release else (["--rollback"] if rollback else [])
    out += ["--grace", f"{grace:g}", *(["--keep", str(keep)] if keep is not None else [])]
    out += [arg for key, value in watch.items() if value for arg in (f"--{key.replace('_', '-')}", str(value))]
    return out + ([] if wait else ["--no-wait"])


def release_follow(board: Board, to: str, txn: str, on_record: Callable[[dict[str, Any]], None], *, timeout: float = 7200) -> int:
    """Follow the board's journal of ``txn``: each record to ``on_record`` as it is written. Returns ssh's exit
    status 255 when the connection dropped (the caller reconnects), 0 when the board's follow ended; raises the
    board's own error (an unknown transaction, ...)."""

    def on_line(line: str) -> None:
        for rec in json_lines(board, "the deploy journal", line):
            on_record(rec)

    code, err = stream_edgecnn(board, board_argv("release", "follow", "--to", to, "--id", txn), on_line, timeout=timeout)
    if code not in (0, 255):
        raise error_from(board, "follow the deploy", code, err)
    return code


def release_status(board: Board, to: str) -> dict[str, Any]:
    """The board's deploy folder: current, previous, releases, busy, the last transaction's end."""
    return call_json(board, "release", "status", "--to", to, step="status", timeout=60)
