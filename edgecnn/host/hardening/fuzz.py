"""Byte-mutation fuzzing of model files and of deployed artifacts (issue #8).

Two questions per mutant of a small valid model:

1. Loaded and run as a bare file, in a child (`IsolatedRunner`): does edgecnn answer with an EdgeCNNError or a
   result, and never an uncaught exception of another type or a hang? (A native crash is caught in the child and
   reported; it is counted separately because only the runtime can fix it.)
2. Put in place of the model inside its artifact folder: is it refused by the manifest's hash check before any
   runtime parses it?
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ArtifactError
from edgecnn.host.hardening.isolate import KERAS, OUTCOMES, IsolatedRunner, ProbeResult
from edgecnn.manifest import MANIFEST_NAME

MUTATORS = ("flip", "overwrite", "truncate", "insert", "delete", "zero", "splice")


def _preload(fmt: str) -> tuple[str, ...]:
    """What a probe child imports before its first file: the runtime's modules (or Keras for a .keras model)."""
    from edgecnn.formats import FORMATS, Format
    from edgecnn.runtime.base import RUNTIMES

    if fmt == KERAS:
        return ("edgecnn.host.models.io", KERAS)
    return RUNTIMES.get(FORMATS[Format(fmt)].runtime).preload


def _companion(fmt: str) -> str | None:
    """The second file of a two-file format (OpenVINO's weights), or None."""
    from edgecnn.formats import FORMATS, Format

    files = FORMATS[Format(fmt)].files if fmt != KERAS else ()
    return Path(files[1][1]).suffix if len(files) > 1 else None


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random mutation of ``data``; returns the mutant and what was done."""
    kind = MUTATORS[int(rng.integers(len(MUTATORS)))]
    b = bytearray(data)
    n = len(b)
    pos = int(rng.integers(n))
    if kind == "flip":
        count = int(rng.integers(1, 9))
        for i in rng.integers(0, n, count):
            b[int(i)] ^= 1 << int(rng.integers(8))
        return bytes(b), f"flip {count} bits"
    size = int(min(n - pos, rng.integers(1, 65)))
    if kind == "overwrite":
        b[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    elif kind == "truncate":
        return bytes(b[:pos]), f"truncate at {pos}/{n}"
    elif kind == "insert":
        b[pos:pos] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    elif kind == "delete":
        del b[pos : pos + size]
    elif kind == "zero":
        b[pos : pos + size] = bytes(size)
    else:  # splice: copy a chunk from elsewhere in the file over this place
        src = int(rng.integers(n))
        chunk = data[src : src + size]
        b[pos : pos + len(chunk)] = chunk
    return bytes(b), f"{kind} {size} bytes at {pos}/{n}"


def model_file(artifact: Path) -> tuple[Path, str]:
    """The model file of an artifact folder (or a training run's model.keras) and its format's name."""
    from edgecnn.formats import FORMATS

    candidates = [(info.suffix, str(info.format)) for info in FORMATS.values()] + [(".keras", KERAS)]
    for suffix, fmt in candidates:
        found = sorted(artifact.glob(f"*{suffix}"))
        if found:
            return found[0], fmt
    raise ArtifactError(f"{artifact}: no model inside (looked for {', '.join(s for s, _ in candidates)})")


@dataclass
class FormatReport:
    format: str
    source: str
    mutants: int = 0
    outcomes: Counter = field(default_factory=Counter)
    gate_refused: int = 0
    gate_checked: int = 0
    restarts: int = 0
    seconds: float = 0.0
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """0 uncaught non-edgecnn exceptions, 0 hangs, every mutant refused by the integrity gate."""
        return self.outcomes["uncaught"] == 0 and self.outcomes["hung"] == 0 and self.gate_refused == self.gate_checked

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "source": self.source,
            "mutants": self.mutants,
            "outcomes": {k: self.outcomes.get(k, 0) for k in OUTCOMES},
            "integrity_gate": {"checked": self.gate_checked, "refused": self.gate_refused},
            "child_restarts": self.restarts,
            "seconds": round(self.seconds, 1),
            "passed": self.passed,
            "examples": self.examples,
        }


def _gate_refuses(artifact: Path, name: str, mutant: bytes, original: bytes, workdir: Path) -> bool:
    """``mutant`` put in place of file ``name`` (``original``) in a copy of the artifact: refused before any runtime
    parses it?"""
    from edgecnn.manifest import Manifest

    copy = workdir / "artifact"
    if not copy.exists():
        shutil.copytree(artifact, copy)
    target = copy / name
    target.write_bytes(mutant)
    try:
        Manifest.load(copy, verify=True)
    except ArtifactError as exc:
        return "does not match the manifest" in exc.message or "truncated or replaced" in exc.message
    finally:
        target.write_bytes(original)
    return mutant == original  # an identical "mutant" is rightly accepted


def fuzz_artifact(
    artifact: str | Path,
    count: int,
    *,
    seed: int = 0,
    timeout: float = 10.0,
    memory_mb: int = 4096,
    progress: Callable[[int, ProbeResult], None] | None = None,
) -> FormatReport:
    """``count`` byte-mutants of the model in ``artifact``: each probed in a child and checked by the integrity gate."""
    artifact = Path(artifact)
    path, fmt = model_file(artifact)
    data = path.read_bytes()
    rng = np.random.default_rng(seed)
    report = FormatReport(fmt, str(path))
    has_manifest = (artifact / MANIFEST_NAME).is_file()  # a training run's model.keras has none: no gate to check
    t0 = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="edgecnn-fuzz-") as tmp,
        IsolatedRunner(timeout=timeout, memory_mb=memory_mb, preload=_preload(fmt)) as runner,
    ):
        work = Path(tmp)
        probe_dir = work / "probe"
        probe_dir.mkdir()
        companion = _companion(fmt)
        if companion:  # a two-file format (OpenVINO's IR): mutate the model half the time, its weights the other half
            weights = path.with_suffix(companion).read_bytes()
        for i in range(count):
            target = probe_dir / path.name
            if companion:
                mutate_xml = bool(rng.integers(2))
                mutant, what = mutate(data if mutate_xml else weights, rng)
                target.write_bytes(mutant if mutate_xml else data)
                target.with_suffix(companion).write_bytes(weights if mutate_xml else mutant)
                what = f"{'xml' if mutate_xml else 'bin'}: {what}"
            else:
                mutant, what = mutate(data, rng)
                target.write_bytes(mutant)
            result = runner.probe(target)
            report.mutants += 1
            report.outcomes[result.outcome] += 1
            examples = report.examples.setdefault(result.outcome, [])
            if len(examples) < 5:
                examples.append({"mutation": what, "detail": result.detail})
            if has_manifest:
                weights_mutated = bool(companion) and not mutate_xml
                name = path.with_suffix(companion).name if weights_mutated else path.name
                report.gate_checked += 1
                report.gate_refused += int(_gate_refuses(artifact, name, mutant, weights if weights_mutated else data, work))
            if progress:
                progress(i, result)
        report.restarts = runner.restarts
    report.seconds = time.perf_counter() - t0
    return report
