"""Held-out data for the parity gate and the calibration set, from a run or from folders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.errors import DataError
from edgecnn.host.convert.source import SourceModel
from edgecnn.host.data.calibration import CalibrationSet


@dataclass
class EvalSet:
    x: np.ndarray
    y: np.ndarray | None
    source: str


def conversion_data(
    src: SourceModel,
    *,
    data: str | None = None,
    calibration: str | None = None,
    n_calibration: int = 300,
    n_eval: int | None = None,
    seed: int = 0,
) -> tuple[EvalSet | None, CalibrationSet | None]:
    """(held-out set, calibration set): from --data, else the run's own test split; --calibration overrides."""
    eval_set = calib = None
    if data:
        from edgecnn.host.data import load_dataset

        ds = load_dataset(data)
        missing = [c for c in ds.class_names if c not in src.labels]
        if missing:
            raise DataError(f"--data classes {missing} are not among the model's labels ({', '.join(src.labels)})")
        y = np.array([src.labels.index(ds.class_names[v]) for v in ds.labels], dtype=np.int64)
        from edgecnn.preprocess import preprocess_batch

        eval_set = EvalSet(preprocess_batch(ds.images, src.spec, source_order=ds.source_order), y, str(data))
        sample = ds.balanced_sample(n_calibration, seed=seed)
        calib = CalibrationSet.from_images(sample.images, src.spec, source_order=ds.source_order, source=f"{data} (sample)")
    elif src.run_dir and (src.run_dir / "recipe.resolved.yaml").is_file():
        from edgecnn.host.train.recipe import load_recipe
        from edgecnn.host.train.trainer import prepare

        recipe = load_recipe(src.run_dir / "recipe.resolved.yaml")
        prepared = prepare(recipe)
        if prepared.spec != src.spec:
            raise DataError(f"{src.run_dir}: preprocess.json differs from what the recipe produces; was the run edited?")
        eval_set = EvalSet(prepared.x_test, prepared.y_test, f"{recipe.data} (test split, seed {recipe.seed})")
        sample = prepared.train_raw.balanced_sample(n_calibration, seed=seed)
        calib = CalibrationSet.from_images(
            sample.images, src.spec, source_order=sample.source_order, source=f"{recipe.data} (training split, class-balanced)"
        )
    if calibration:
        calib = CalibrationSet.from_path(calibration, src.spec, limit=n_calibration, seed=seed)
    if calib is not None:
        calib.check(src.spec)
    if eval_set is not None and n_eval:
        eval_set = EvalSet(eval_set.x[:n_eval], None if eval_set.y is None else eval_set.y[:n_eval], eval_set.source)
    return eval_set, calib


def random_eval(src: SourceModel, n: int = 50, seed: int = 0) -> EvalSet:
    """Without any data, parity still runs: on random inputs in the model's value range (no accuracy)."""
    lo, hi = src.spec.value_range()
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, size=(n, *src.spec.input_shape)).astype(np.float32)
    return EvalSet(x, None, f"{n} random inputs (no --data given)")


def require_calibration(calib: CalibrationSet | None, what: str) -> CalibrationSet:
    if calib is None:
        raise DataError(
            f"{what} needs calibration data and none is available",
            hint="convert an edgecnn run directory, or pass --data DIR or --calibration DIR",
        )
    return calib
