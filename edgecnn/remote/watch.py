"""Device side: how the board judges its service after a switch: the restart command's exit, the health log moving
(a process started after the switch), an edgecnn serve /healthz answering with the new release's model, a check
command; all within the transaction's grace period."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any


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


def healthy(txn: Any, since: float) -> str | None:
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
