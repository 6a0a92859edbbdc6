"""Host side: is this calibration set fit to calibrate int8? (``edgecnn calibrate-check``, and in ``convert``.)

Post-training int8 takes each activation's range from the calibration images, so a calibration set that is not
what the camera will see gives wrong ranges, and the parity gate then fails (or, worse, passes on held-out data
that shares the mistake). The checks, each with what to do:

* **images**: shape and channels of the files themselves. Colour files for a model trained on grey (or grey files
  for a colour model), or images whose size is far from the training images' (over 2x either way, or, without
  training images, smaller than half the model's input): an error when most images are like that.
* **classes**: with one sub-folder per class, their counts (one class is an error: every range would come from one
  kind of image; a class missing or 3x rarer than another, a warning); for any folder, what the float model
  predicts on them (over half of them one class, a warning).
* **distribution**: each image's per-channel mean and spread against the training images' (the run's training
  split, else ``--data``): images more than 4 standard deviations away are listed; over 5% of them, a warning.
* **range**: the preprocessed values against the model's preprocessing (values far outside it are refused when the
  set is loaded) and against the training images' 0.1-99.9 percentile span (under half or over twice: a warning).
* **size sweep** (``calibrate-check`` only; it converts several times): TFLite int8 calibrated on the first 50,
  100, 300, 1000 images (as many as exist), its top-1 agreement with Keras on the held-out images; the smallest
  count within half a point of the largest is "enough".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import DataError

SWEEP = (50, 100, 300, 1000)
OOD_SIGMA = 4.0


@dataclass
class CheckReport:
    findings: list[dict[str, str]] = field(default_factory=list)  # {"check", "level": ok|warning|error, "message"}
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, level: str, message: str) -> None:
        self.findings.append({"check": check, "level": level, "message": message})

    @property
    def errors(self) -> list[dict[str, str]]:
        return [f for f in self.findings if f["level"] == "error"]

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [f for f in self.findings if f["level"] == "warning"]

    def to_dict(self) -> dict[str, Any]:
        return {"findings": self.findings, "figures": self.figures}

    def raise_errors(self, source: str) -> None:
        if self.errors:
            raise DataError(
                f"calibration set {source}: " + "; ".join(f["message"] for f in self.errors),
                hint="calibrate on a few hundred images like the ones the camera will see, from every class",
            )


@dataclass
class RawImages:
    """The calibration files as decoded (before preprocessing): for size and channel checks and class counts."""

    images: list[np.ndarray]
    files: list[Path]
    classes: dict[str, int]  # sub-folder -> count ({} for a flat folder)


def read_folder(path: Path, limit: int = 1000, seed: int = 0) -> RawImages:
    from edgecnn.images import check_image, image_files

    if not path.is_dir():
        raise DataError(f"calibration data {path} is not a folder of images")
    files = image_files(path)
    rng = np.random.default_rng(seed)
    files = [files[i] for i in sorted(rng.permutation(len(files))[:limit])]
    images, kept = [], []
    for f in files:
        img, reason = check_image(f)
        if reason is None:
            images.append(img)
            kept.append(f)
    if not images:
        raise DataError(f"no readable images in {path}")
    classes: dict[str, int] = {}
    for f in kept:
        rel = f.relative_to(path).parts
        if len(rel) > 1:
            classes[rel[0]] = classes.get(rel[0], 0) + 1
    return RawImages(images, kept, classes if len(classes) == len({f.parent for f in kept}) and classes else {})


def _is_colour(img: np.ndarray) -> bool:
    if img.ndim == 2 or img.shape[2] == 1:
        return False
    c = img[..., :3].astype(np.int16)
    return bool(np.abs(c[..., 0] - c[..., 1]).mean() > 2 or np.abs(c[..., 1] - c[..., 2]).mean() > 2)


def check_images(raw: RawImages, spec: Any, train_sizes: list[tuple[int, int]] | None, report: CheckReport) -> None:
    """Channels and sizes of the files."""
    colour = np.mean([_is_colour(img) for img in raw.images])
    report.figures["colour_fraction"] = float(colour)
    if spec.channels == 1 and colour > 0.5:
        report.add("images", "error", f"{colour:.0%} of the images are in colour; the model was trained on grey images")
    elif spec.channels == 3 and colour < 0.5:
        report.add("images", "error", f"{1 - colour:.0%} of the images are grey; the model takes colour images")
    sizes = np.array([img.shape[:2] for img in raw.images], dtype=float)
    median = np.median(sizes, axis=0)
    report.figures["median_size"] = [int(v) for v in median]
    if train_sizes:
        ref = np.median(np.array(train_sizes, dtype=float), axis=0)
        ratio = float(np.sqrt(np.prod(median / ref)))
        report.figures["size_ratio_to_training"] = ratio
        if ratio > 2 or ratio < 0.5:
            report.add(
                "images",
                "error",
                f"the images are {int(median[1])}x{int(median[0])} (median), the training images "
                f"{int(ref[1])}x{int(ref[0])}: resized {ratio:.1f}x differently, their detail and ranges differ",
            )
    elif (median < np.array([spec.height, spec.width]) / 2).any():
        report.add(
            "images",
            "warning",
            f"the images are {int(median[1])}x{int(median[0])} (median), under half the model's {spec.width}x{spec.height}",
        )


def check_classes(raw: RawImages | None, probs: np.ndarray, labels: list[str], report: CheckReport) -> None:
    """Folder classes (when the folder has them) and what the float model predicts."""
    if raw is not None and raw.classes:
        counts = raw.classes
        report.figures["class_counts"] = counts
        if len(counts) == 1:
            report.add("classes", "error", f"every image is in one class folder ('{next(iter(counts))}')")
        else:
            missing = [c for c in labels if c not in counts]
            if missing:
                report.add("classes", "warning", f"no images of {len(missing)} class(es): {', '.join(missing[:8])}")
            lo, hi = min(counts.values()), max(counts.values())
            if hi > 3 * lo:
                report.add("classes", "warning", f"unbalanced: {hi} images in the largest class, {lo} in the smallest")
    predicted = np.bincount(probs.argmax(1), minlength=len(labels))
    top = int(predicted.argmax())
    share = float(predicted[top] / len(probs))
    report.figures["predicted_top_class"] = {"label": labels[top], "share": share}
    if len(labels) >= 3 and share > 0.5:
        report.add("classes", "warning", f"the float model predicts '{labels[top]}' for {share:.0%} of the images")


def check_distribution(x: np.ndarray, files: list[Path] | None, reference: np.ndarray | None, report: CheckReport) -> None:
    """Per-image channel means and spreads against the training images'; and the value span."""
    if reference is None or len(reference) < 10:
        report.add("distribution", "ok", "no training images to compare with (give --data, or calibrate a run)")
        return
    feats = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
    ref = np.concatenate([reference.mean(axis=(1, 2)), reference.std(axis=(1, 2))], axis=1)
    z = np.abs(feats - ref.mean(0)) / (ref.std(0) + 1e-6)
    far = np.flatnonzero(z.max(1) > OOD_SIGMA)
    report.figures["out_of_distribution"] = {"n": int(len(far)), "of": len(x)}
    if len(far) > 0.05 * len(x):
        names = ", ".join(files[i].name for i in far[:5]) if files else ""
        report.add(
            "distribution",
            "warning",
            f"{len(far)} of {len(x)} images are more than {OOD_SIGMA:g} standard deviations from the training "
            f"images' brightness/contrast" + (f" (e.g. {names})" if names else ""),
        )
    span = float(np.percentile(x, 99.9) - np.percentile(x, 0.1))
    ref_span = float(np.percentile(reference, 99.9) - np.percentile(reference, 0.1))
    report.figures["value_span"] = {"calibration": span, "training": ref_span}
    if ref_span > 0 and (span < 0.5 * ref_span or span > 2 * ref_span):
        report.add(
            "range",
            "warning",
            f"the preprocessed values span {span:.3g}, the training images' {ref_span:.3g}: the int8 ranges will not fit",
        )


def sweep(
    session: Any, eval_x: np.ndarray, keras_probs: np.ndarray, sizes: list[int], say=lambda s: None
) -> list[dict[str, Any]]:
    """TFLite int8 calibrated on the first n images for each n (the selective quantiser, nothing left in float);
    top-1 agreement with Keras on ``eval_x``."""
    from edgecnn.formats import Precision
    from edgecnn.host.convert.tflite import TFLiteSelective
    from edgecnn.host.data.calibration import CalibrationSet

    every, out = session.calibration, []
    try:
        for n in sizes:
            say(f"size sweep: TFLite int8 calibrated on {n} images")
            session.calibration = CalibrationSet(every.samples[:n], f"first {n} of {every.source}")
            quantiser = TFLiteSelective(session, Precision.INT8, "per-channel")
            try:
                probs = quantiser.probabilities([], eval_x)
            finally:
                quantiser.close()
            out.append({"n": n, "agreement": float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))})
    finally:
        session.calibration = every
    return out


def sweep_sizes(available: int) -> list[int]:
    return sorted({n for n in SWEEP if n < available} | {available})


def enough(points: list[dict[str, Any]], report: CheckReport) -> None:
    """The smallest count whose agreement is within half a point of the largest count's."""
    if not points:
        return
    best = points[-1]["agreement"]
    first = next(p for p in points if p["agreement"] >= best - 0.005)
    report.figures["size_sweep"] = points
    report.figures["enough"] = first["n"]
    if first is points[-1] and len(points) > 1 and points[-2]["agreement"] < best - 0.005:
        report.add(
            "size",
            "warning",
            f"agreement still rises at {points[-1]['n']} images ({points[-2]['agreement']:.1%} -> {best:.1%}): "
            "more calibration images would likely help",
        )
    else:
        report.add("size", "ok", f"{first['n']} images are enough for this model (agreement {first['agreement']:.1%})")


def _reference(source: Any, data: str | None, limit: int = 1000) -> tuple[np.ndarray | None, list[tuple[int, int]] | None]:
    """(preprocessed training-like images, their raw sizes): the run's training split, else --data, else none."""
    from edgecnn.preprocess import preprocess_batch

    ds = None
    if source.run_dir and (source.run_dir / "recipe.resolved.yaml").is_file():
        from edgecnn.host.train.recipe import load_recipe
        from edgecnn.host.train.trainer import prepare

        ds = prepare(load_recipe(source.run_dir / "recipe.resolved.yaml")).train_raw
    elif data:
        from edgecnn.host.data import load_dataset

        ds = load_dataset(data)
    if ds is None:
        return None, None
    pick = np.random.default_rng(0).permutation(len(ds))[:limit]
    images = [ds.images[i] for i in pick]
    return preprocess_batch(images, source.spec, source_order=ds.source_order), [img.shape[:2] for img in images]


def run_check(
    model: str | Path, calibration: str | Path, *, data: str | None = None, device: str = "host", sizes: list[int] | None = None,
    trust: bool = False, say=lambda s: None,
) -> CheckReport:  # fmt: skip
    """Every check, the size sweep included (``sizes`` [] skips it)."""
    from edgecnn.devices import load_profile
    from edgecnn.host.convert.data import conversion_data
    from edgecnn.host.convert.session import ConversionSession
    from edgecnn.host.convert.source import load_source
    from edgecnn.host.data.calibration import CalibrationSet

    profile = load_profile(device)
    say(f"loading {model}")
    source = load_source(model, trust=trust)
    path = Path(calibration)
    raw = read_folder(path) if path.is_dir() else None
    if raw is not None:
        calib = CalibrationSet.from_images(raw.images, source.spec, source_order="BGR", source=str(path)).check(source.spec)
    else:
        calib = CalibrationSet.from_path(path, source.spec, limit=1000)
    say("comparing with the training images")
    ref_x, ref_sizes = _reference(source, data)
    report = CheckReport()
    report.figures["n"] = len(calib)
    if raw is not None:
        check_images(raw, source.spec, ref_sizes, report)
    check_classes(raw, source.predict(calib.samples), source.labels, report)
    check_distribution(calib.samples, raw.files if raw else None, ref_x, report)
    eval_set, _ = conversion_data(source, data=data)
    if sizes != [] and eval_set is not None and not report.errors:
        keras_probs = source.predict(eval_set.x)
        with ConversionSession(source, profile) as session:
            session.set_calibration(calib)
            enough(sweep(session, eval_set.x, keras_probs, sizes or sweep_sizes(len(calib)), say), report)
    elif report.errors:
        report.add("size", "ok", "size sweep skipped until the errors above are fixed")
    elif sizes != []:
        report.add("size", "ok", "no held-out images to judge a size sweep on (give --data)")
    return report


def quick_check(session: Any, calibration: str | Path) -> CheckReport:
    """What ``convert`` checks of a calibration folder the user gave, before converting: images, classes,
    distribution (against the held-out images). Errors refuse the conversion; warnings are said and recorded."""
    path = Path(calibration)
    report = CheckReport()
    raw = read_folder(path, limit=len(session.calibration)) if path.is_dir() else None
    if raw is not None:
        check_images(raw, session.source.spec, None, report)
    x = session.calibration.samples
    check_classes(raw, session.source.predict(x), session.source.labels, report)
    ev = session.eval_set
    check_distribution(x, None, ev.x if ev is not None and ev.y is not None else None, report)
    return report
