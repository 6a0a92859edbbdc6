"""Host side: refit the latency estimate for a device profile from what boards of that kind measured.

``edgecnn benchmark --on BOARD`` keeps every (estimate, measurement) pair in ``measurements/<device>.jsonl``, with
the artifact's per-layer costs. ``edgecnn calibrate --from-measurements`` fits the estimate's cost formula
(``profiling/estimate.py``) to those pairs, one fit per (runtime, precision, threads), evaluated with the device
profile's peaks and bandwidth, so ``profile --device NAME`` and ``benchmark --device NAME`` estimate from what
boards of that kind really did.

The formula has nine coefficients and a user has a handful of measured artifacts, so the fit starts from a prior:
the host's calibration for that runtime (``edgecnn calibrate``), else the plain roofline. Two candidates are
judged against the prior by leave-one-out error (each artifact predicted by a fit that did not see it):

* ``scale``: the prior times one factor, the median ratio of measured to predicted (enough when a board is
  uniformly slower or faster than its profile says);
* ``refit``: non-negative least squares on the relative error with every coefficient pulled towards the scaled
  prior (a ridge worth 1, 1/10 or 1/100 of a measurement per coefficient: three candidates), so a coefficient
  moves only as far as the measurements demand.

The simplest candidate whose leave-one-out error is within the noise of the best is written; when that is the
prior, nothing is written.
With one artifact there is nothing to leave out: the scale is written and its error is said to be unknown.
SciPy's NNLS makes this host side; the result is a small JSON file that the device-side estimate reads.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices import DeviceProfile, load_profile
from edgecnn.errors import ConfigError
from edgecnn.profiling.estimate import COEFFICIENTS, KINDS, device_calibration_path, features, find_calibration

SCHEMA = "edgecnn.calibration"
PRIOR_WEIGHTS = (1.0, 0.1, 0.01)  # the prior as 1, 1/10, 1/100 of a measurement per coefficient


@dataclass(frozen=True)
class Pair:
    """One artifact measured on a board: its per-layer costs and the median of its measured p50s."""

    name: str
    layers: list[list[Any]]
    measured_ms: float
    runs: int
    threads: int | None
    estimate_ms: float | None  # the estimate benchmark made when it was measured (median), if it made one


def _bucket(precision: str) -> str:
    return "int8" if precision == "int8" else "fp32"


def _layer_rows(layers: Any) -> bool:
    """Per-layer rows as the estimate reads them: lists of 3 to 7 numbers (the fifth, when there, the kind's name)."""
    if not isinstance(layers, list) or not layers:
        return False
    for row in layers:
        if not isinstance(row, list) or not 3 <= len(row) <= 7:
            return False
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for i, v in enumerate(row) if i != 4):
            return False
        if len(row) > 4 and not isinstance(row[4], str):
            return False
    return True


def _parse(line: str, n: int) -> tuple[tuple[str, str], str, int | None, dict] | str:
    """(group key, artifact name, threads, record) of one kept line, or why it is left out."""
    try:
        rec = json.loads(line)
        if not isinstance(rec, dict) or not _layer_rows(rec.get("layers")):
            return "unreadable line" if not isinstance(rec, dict) or rec.get("layers") else "no per-layer costs (kept by an older edgecnn)"
        t = float(rec["measured_p50_ms"])
        runtime = rec["runtime"]["runtime"] if isinstance(rec["runtime"], dict) else rec["runtime"]
        key = (str(runtime), _bucket(str(rec["precision"])))
        threads = int(rec["threads"]) if rec.get("threads") else None
    except (ValueError, KeyError, TypeError, RecursionError, MemoryError):
        return "unreadable line"
    if not (t > 0 and math.isfinite(t)):
        return "no measured p50"
    sha = str(rec.get("artifact_sha256") or rec.get("source_sha256") or n)[:12]
    return key, f"{rec.get('model_name') or '?'} {rec.get('format')}/{rec.get('precision')} {sha}", threads, rec


def read_pairs(device: str, folder: Path) -> tuple[dict[tuple[str, str], list[Pair]], dict[str, int]]:
    """measurements/<device>.jsonl grouped by (runtime, precision), one Pair per artifact and thread count; and the
    lines left out, by reason."""
    file = folder / f"{device}.jsonl"
    if not file.is_file():
        raise ConfigError(
            f"no measurements for '{device}' in {folder}",
            hint=f"measure on a board first: edgecnn benchmark RUN --device {device} --on ssh://user@board",
        )
    left_out: dict[str, int] = {}
    by_artifact: dict[tuple[str, str], dict[tuple[str, int | None], tuple[list, list[float], list[float]]]] = {}
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        parsed = _parse(line, n)
        if isinstance(parsed, str):
            left_out[parsed] = left_out.get(parsed, 0) + 1
            continue
        key, name, threads, rec = parsed
        entry = by_artifact.setdefault(key, {}).setdefault((name, threads), (rec["layers"], [], []))
        entry[1].append(float(rec["measured_p50_ms"]))
        if isinstance(rec.get("estimate_p50_ms"), (int, float)) and rec["estimate_p50_ms"] > 0:
            entry[2].append(float(rec["estimate_p50_ms"]))
    groups = {
        key: [
            Pair(name, layers, statistics.median(ts), len(ts), threads, statistics.median(es) if es else None)
            for (name, threads), (layers, ts, es) in arts.items()
        ]
        for key, arts in by_artifact.items()
    }
    return groups, left_out


def _predict(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ coef


def fit_scale(prior: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The prior times the median ratio of measured to predicted (geometric: a board twice as slow and one half as
    slow weigh alike)."""
    p = _predict(prior, x)
    return prior * math.exp(statistics.median(np.log(t / p)))


def fit_refit(prior: np.ndarray, x: np.ndarray, t: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """NNLS on relative error, every coefficient pulled towards the scaled prior with ``weight`` measurements' worth.
    A coefficient the prior has at zero is pulled towards zero in units of its mean share of a measured time."""
    from scipy.optimize import nnls

    scaled = fit_scale(prior, x, t)
    rows = list(x / t[:, None])
    target = list(np.ones(len(t)))
    share = (x / t[:, None]).mean(axis=0)
    w = math.sqrt(weight)
    for j, c in enumerate(scaled):
        e = np.zeros(len(scaled))
        if c > 0:
            e[j] = w / c
            rows.append(e)
            target.append(w)
        elif share[j] > 0:
            e[j] = w * share[j]
            rows.append(e)
            target.append(0.0)
    coef, _ = nnls(np.array(rows), np.array(target))
    return coef


# candidates from the simplest to the freest; the pull towards the prior is chosen by leave-one-out error too
FITS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "scale": fit_scale,
    **{f"refit (prior weight {w:g})": functools.partial(fit_refit, weight=w) for w in PRIOR_WEIGHTS},
}


def leave_one_out(method: str, prior: np.ndarray, x: np.ndarray, t: np.ndarray) -> list[float]:
    """Relative error on each artifact of a fit made without it (the prior's error when ``method`` is 'prior')."""
    errors = []
    for i in range(len(t)):
        keep = np.arange(len(t)) != i
        coef = prior if method == "prior" else FITS[method](prior, x[keep], t[keep])
        errors.append(float(_predict(coef, x[i]) / t[i] - 1))
    return errors


def _prior(
    runtime: str, precision: str, threads: int, host: DeviceProfile, device: DeviceProfile
) -> tuple[np.ndarray, float, str]:
    """(coefficients, the clock they were fitted at, where they came from): this host's calibration for the runtime,
    else the plain roofline (every kind at its roofline, no fixed costs) at the device's clock."""
    for t in dict.fromkeys([threads, host.threads, 1]):
        cal = find_calibration(runtime, precision, t, cpu_model=host.cpu.model) if t else None
        if cal is not None:
            coef = np.array([float(cal["coefficients"][c]) for c in COEFFICIENTS])
            return coef, float(cal["host"]["clock_ghz"]), f"this host's calibration ({cal['path']})"
    coef = np.array([0.0, 0.0, *([1.0] * len(KINDS))])
    return coef, float(device.cpu.clock_ghz or 1.0), "the plain roofline (no 'edgecnn calibrate' on this host)"


def _median_abs(errors: list[float]) -> float:
    return statistics.median(abs(e) for e in errors)


def _simplest_good_enough(errors: dict[str, float]) -> str:
    """The simplest of prior, scale, refit (in that order) whose leave-one-out error is within one point and a
    tenth of the best: a fit that wins inside the noise of a few measurements is not a better estimate."""
    best = min(errors.values())
    return next(m for m in errors if errors[m] <= best * 1.1 + 0.01)


def _choose(prior: np.ndarray, x: np.ndarray, t: np.ndarray) -> tuple[str, dict[str, float] | None]:
    """(the method, each candidate's median leave-one-out error); one artifact leaves nothing out: scale."""
    if len(t) == 1:
        return "scale", None
    loo = {m: _median_abs(leave_one_out(m, prior, x, t)) for m in ("prior", *FITS)}
    return _simplest_good_enough(loo), loo


def refit_group(device: DeviceProfile, host: DeviceProfile, runtime: str, precision: str, pairs: list[Pair]) -> dict:
    """Judge prior, scale and refit on one group of pairs; the record of the winner (``coefficients`` None when the
    prior stays best). Each pair's features use the threads the board measured with (the peaks scale with them);
    the fit serves estimates at the device profile's threads."""
    threads = device.threads
    prior, ref_clock, prior_from = _prior(runtime, precision, threads, host, device)
    x = np.array([features(p.layers, precision, device, p.threads or threads, ref_clock_ghz=ref_clock) for p in pairs])
    t = np.array([p.measured_ms for p in pairs])
    formula = [float(v) for v in _predict(prior, x) / t - 1]
    # the error of the estimate the user was shown (benchmark's), else of the prior formula
    before = [p.estimate_ms / p.measured_ms - 1 if p.estimate_ms else f for p, f in zip(pairs, formula)]
    method, loo = _choose(prior, x, t)
    coef = FITS[method](prior, x, t) if method != "prior" else None
    after = [float(v) for v in _predict(coef, x) / t - 1] if coef is not None else formula
    return {
        "schema": SCHEMA,
        "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fitted_from": "measurements",
        "device": device.name,
        "runtime": runtime,
        "precision": precision,
        "threads": threads,
        "host": {"cpu_model": device.cpu.model, "clock_ghz": ref_clock},
        "prior": prior_from,
        "method": method,
        "coefficients": dict(zip(COEFFICIENTS, map(float, coef))) if coef is not None else None,
        "artifacts": [
            {
                "name": p.name,
                "measured_ms": p.measured_ms,
                "runs": p.runs,
                "threads": p.threads,
                "before_error": b,
                "after_error": a,
            }
            for p, b, a in zip(pairs, before, after)
        ],
        "before_error_median_abs": _median_abs(before),
        "leave_one_out_error_median_abs": loo,
        # what the estimate's likely range widens by: the winner's leave-one-out error (unknown from one artifact)
        "fit_error_median_abs": loo[method] if loo else None,
    }


def from_measurements(
    devices: list[str] | None, *, folder: Path, out_dir: Path | None = None, say: Callable[[str], None] = lambda s: None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """One record per (device, runtime, precision, threads) with measurements; written where a fit beat the prior.
    Returns (records, lines left out per device)."""
    names = devices or sorted(p.stem for p in folder.glob("*.jsonl"))
    if not names:
        raise ConfigError(
            f"no measurements in {folder}",
            hint="measure on a board first: edgecnn benchmark RUN --device NAME --on ssh://user@board",
        )
    profiles = {name: load_profile(name) for name in names}  # an unknown device: "did you mean", before any work
    host = load_profile("host")
    records, skipped = [], {}
    for name in names:
        groups, skipped[name] = read_pairs(name, folder)
        for (runtime, precision), pairs in sorted(groups.items()):
            say(f"{name}: {runtime}/{precision}, {len(pairs)} artifact(s)")
            rec = refit_group(profiles[name], host, runtime, precision, pairs)
            if rec["coefficients"] is not None:
                path = device_calibration_path(name, runtime, precision, rec["threads"], base=out_dir)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec, indent=2) + "\n")
                rec["path"] = str(path)
            records.append(rec)
    return records, skipped
