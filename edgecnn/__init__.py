"""Device side: edgecnn: from a trained CNN classifier to a camera on a small board.

The public API, the same functions the command line calls::

    import edgecnn

    summary = edgecnn.convert("runs/lenet", "rpi4")                  # host: needs edgecnn[train]
    with edgecnn.Classifier("out/lenet-rpi4/tflite-int8") as clf:    # device: numpy + one runtime
        print(clf.classify(image).top)
    report = edgecnn.classify_stream("out/lenet-rpi4", "synthetic:?frames=50")
    result = edgecnn.profile("out/lenet-rpi4/tflite-int8", runs=100)

``import edgecnn`` is cheap: it imports none of these until one is used, and TensorFlow only when ``convert`` runs
(the host wing); ``Classifier``, ``classify_stream`` and ``profile`` never import it.
"""

from __future__ import annotations

__version__ = "0.2.0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers read this spelling too)

from edgecnn.errors import EdgeCNNError  # noqa: E402

if TYPE_CHECKING:  # annotations only: importing them would load pathlib, numpy, a runtime, or the host wing
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from edgecnn.host.convert.api import ConversionSummary
    from edgecnn.runtime.classifier import Classifier
    from edgecnn.stream.sources import FrameSource

__all__ = ["Classifier", "EdgeCNNError", "__version__", "classify_stream", "convert", "profile"]


def convert(
    model: str | Path,
    device: str = "host",
    *,
    precisions: Sequence[str] | None = None,
    out: str | Path | None = None,
    calibration: str | None = None,
    data: str | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> ConversionSummary:
    """Convert and quantise a trained model for a device profile, checking every artifact against Keras.

    Needs the host toolchain (``pip install "edgecnn[train]"``); it is imported when this is called.

    Args:
        model: an edgecnn training run folder, or a ``.keras`` file.
        device: a device profile name (``edgecnn devices`` lists them); its formats and precisions are made.
        precisions: ``"int8"`` (every format of the profile) or ``"tflite/int8"`` items; default the profile's.
        out: the output folder (default ``out/<model>-<device>``).
        calibration: an image folder or ``.npy`` of calibration images for int8.
        data: a labelled image folder for the parity gate (default: the run's test split).
        progress: called with one line per step.
        **options: the other fields of ``edgecnn.host.convert.api.ConvertOptions`` (``force``, ``gate``,
            ``max_drop``, ``sign_key``, ``keep_float``, ``qat``, ...).

    Returns:
        The ConversionSummary: one row per artifact (format, precision, size, parity, status) and the folder.

    Raises:
        EdgeCNNError: a ConfigError for a bad option, a ConversionError when a conversion fails.
    """
    from edgecnn.host.convert.api import convert as convert_here  # the host wing: TensorFlow, tf2onnx, NNCF

    return convert_here(
        model, device, precisions=precisions, out=out, calibration=calibration, data=data, progress=progress, **options
    )


def classify_stream(
    artifact: str | Path | Classifier,
    source: str | FrameSource,
    sinks: Sequence[str] = (),
    *,
    device: str | None = None,
    runtime: str | None = None,
    max_frames: int | None = None,
    duration: float | None = None,
    self_check: bool = True,
    trust_key: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Classify the frames of a camera, video, folder or stream with an artifact, into sinks.

    Args:
        artifact: an artifact folder or conversion output folder (the device's runtime chain picks one), or an
            open ``Classifier``.
        source: a source URI: ``0`` (a camera), ``/dev/video0``, ``clip.mp4``, a folder of images,
            ``rtsp://...``, ``http://.../video`` (MJPEG), ``synthetic:?fps=30``.
        sinks: sink URIs: ``jsonl:-``, ``out.mp4``, ``web:8080`` (a live page), ``window:``.
        device: the device profile whose runtime chain and threads apply (default: this host, detected).
        runtime: force one runtime (``litert``, ``onnxruntime``, ``openvino``).
        max_frames: stop after this many frames; duration: after this many seconds.
        self_check: run the artifact's self-check before the first frame (refuses a runtime that disagrees).
        trust_key: refuse an artifact not signed by this public key (default: ``$EDGECNN_TRUST_KEY``).
        **options: ``accelerator``, ``threads``, ``top_k``, ``allow_fallback``, ``source_options``, ``health``,
            ``on_ready``, ``on_prediction``, ``say``, ``stop`` (``edgecnn.stream.api.classify_artifact``).

    Returns:
        The report: frames read, classified, dropped and corrupt, FPS, latency per stage, the runtime used and
        the self-check.
    """
    from edgecnn.stream.api import classify_artifact

    return classify_artifact(
        artifact, source, sinks, device=device, runtime=runtime, max_frames=max_frames, duration=duration,
        self_check=self_check, trust_key=trust_key, **options,
    )  # fmt: skip


def profile(
    model: str | Path,
    *,
    device: str | None = None,
    runtime: str | None = None,
    runs: int = 200,
    min_seconds: float = 10.0,
    warmup: int = 20,
    threads: int | None = None,
    batch: int = 1,
    input_shape: tuple[int, ...] | None = None,
    calibration: str | Path | None = None,
    trust_key: str | Path | None = None,
    self_check: bool = True,
    tick: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Measure an artifact's latency on this machine: cold load, steady invoke, fresh inputs, memory.

    Args:
        model: an artifact folder, a conversion output folder, or a bare ``.tflite`` / ``.onnx`` / ``.xml`` file.
        device: the device profile whose runtime chain and threads apply (default: this host); another device
            is measured here with its chain and the result gains an ``estimate`` for it.
        runtime: force one runtime.
        runs: at least this many timed runs per mode; min_seconds: and at least this long.
        warmup: untimed runs first. threads: the runtime's threads (default: the profile's). batch: batch size.
        input_shape: for a model with dynamic dimensions.
        calibration: the calibration file the estimate uses (default: the one ``edgecnn calibrate`` wrote).
        trust_key: refuse an artifact not signed by this public key (default: ``$EDGECNN_TRUST_KEY``).
        self_check: run the artifact's self-check first.
        tick: called with the fraction done, for a progress bar.

    Returns:
        The schema-versioned result (``schema: edgecnn.profile``): ``invoke`` / ``fresh_input`` percentiles in
        ms, ``load_ms``, ``memory``, ``runtime``, ``system``, and ``estimate`` for another device.
    """
    from edgecnn.profiling.api import profile_for
    from edgecnn.profiling.measure import ProfileOptions

    opts = ProfileOptions(runs=runs, min_seconds=min_seconds, warmup=warmup, threads=threads, batch=batch, input_shape=input_shape)
    return profile_for(model, device=device, runtime=runtime, opts=opts, calibration=calibration, trust_key=trust_key,
                       self_check=self_check, tick=tick)



def __getattr__(name: str) -> Any:
    """``edgecnn.Classifier``, imported when first asked for (it loads numpy and the runtime registry)."""
    if name == "Classifier":
        from edgecnn.runtime.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")
