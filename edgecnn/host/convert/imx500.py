"""Host side: the IMX500 converter (Raspberry Pi AI Camera): Keras 3 -> tf.keras 2.15 -> MCT int8 -> imxconv-tf.

Sony's toolchain cannot share edgecnn's environment (TensorFlow 2.15, Python < 3.12, Java 17), so the work runs in
the ``imx500`` worker on the interpreter of ``edgecnn toolchain install imx500`` (``scheduler.INTERPRETERS``); a
missing toolchain or Java is this artifact's one-line error naming the command, never an install. The model
crosses as a layer graph and weights by name (``imx500_bridge``); ``imx500_worker`` checks the rebuilt float model,
estimates memory, quantises and compiles. The artifact holds ``packerOut.zip`` (what the Pi's ``imx500-package``
turns into ``network.rpk``), ``labels.txt``, the network intrinsics Picamera2 reads (``intrinsics.json``) and the
host emulation (``imx500_emulation.tflite``, MCT's quantised model) that the parity gate and the self-check run
(``runtime/imx500.py``): the manifest records the memory figures, the step times and the toolchain's versions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConversionError
from edgecnn.formats import Format
from edgecnn.host.convert.base import ConversionResult, Converter, ConvertRequest
from edgecnn.host.convert.data import require_calibration
from edgecnn.host.convert.scheduler import INTERPRETERS, WORKERS, Job
from edgecnn.runtime.imx500 import EMULATION, INPUT_SCALE, INTRINSICS

WORKERS.add("imx500", ("tensorflow", "model_compression_toolkit"))
CHIP_BYTES = 8 * 1024 * 1024  # the IMX500's on-chip memory for the network (Sony: 8 MB)


def _interpreter() -> Path:
    from edgecnn.host import toolchain

    return toolchain.require("imx500")


INTERPRETERS["imx500"] = _interpreter


def intrinsics(labels: list[str], preprocess: dict[str, Any], softmax: bool = False) -> dict[str, Any]:
    """Picamera2's network intrinsics (its NetworkIntrinsics JSON) plus what edgecnn needs under ``edgecnn``."""
    return {
        "intrinsics": {"task": "classification", "labels": labels, "softmax": softmax, "preserve_aspect_ratio": False},
        "edgecnn": {"preprocess": preprocess, "input_scale": INPUT_SCALE},
    }


class IMX500Converter(Converter):
    """imx500/int8: ``packerOut.zip`` from MCT's quantisation and imxconv-tf, with its host emulation beside it."""

    format = Format.IMX500

    def jobs(self, request: ConvertRequest) -> list[Job]:
        return []  # its job needs the Keras reference outputs: submitted by convert()

    def files(self) -> dict[str, dict[str, Any]]:
        return super().files() | {
            "emulation": {"path": EMULATION},
            "intrinsics": {"path": INTRINSICS},
            "labels": {"path": "labels.txt"},
            "memory_report": {"path": "memory_report.json"},
        }

    def _job(self, request: ConvertRequest) -> Job:
        from edgecnn.host.convert.imx500_bridge import describe

        s = self.session
        work = s.workdir / "imx500"
        work.mkdir(parents=True, exist_ok=True)
        graph = describe(s.source.model, work / "weights.npz")
        x = s.eval_set.x[:256]
        np.save(work / "parity_x.npy", x)
        np.save(work / "keras_probs.npy", s.source.predict(x))
        params = {
            "graph": graph,
            "parity_x": str(work / "parity_x.npy"),
            "keras_probs": str(work / "keras_probs.npy"),
            "preprocess": s.source.spec.to_dict(),
            "out": str(work / "out"),
            "chip_bytes": CHIP_BYTES,
        }
        return Job("imx500-int8", "imx500", "edgecnn.host.convert.imx500_worker:convert_job", params, needs_calibration=True)

    def convert(self, request: ConvertRequest, out_dir: Path) -> ConversionResult:
        s = self.session
        asked = [flag for flag, on in (("--qat", request.qat), ("--keep-float", request.keep_float),
                                       ("--sensitivity", request.sensitivity), ("--int8-weights", request.int8_weights),
                                       ("--accuracy-control", request.accuracy_control is not None)) if on]  # fmt: skip
        if asked:
            raise ConversionError(
                f"imx500/int8: {', '.join(asked)} do not apply: MCT quantises the whole network for the sensor "
                "(per-channel weights, no float layers)",
                hint="leave them out for the imx500 artifact (--precision tflite/int8 takes them)",
            )
        require_calibration(s.calibration, "imx500/int8")
        _interpreter()  # the one-line "edgecnn toolchain install imx500" before any work
        job = self._job(request)
        if s.say:
            s.say("imx500/int8: rebuilding in tf.keras 2.15, quantising with MCT, compiling with imxconv-tf")
        s.scheduler.add([job])
        answer = s.scheduler.result(job.name)
        shutil.copyfile(answer["packer"], out_dir / "packerOut.zip")
        shutil.copyfile(answer["emulation"], out_dir / EMULATION)
        (out_dir / "memory_report.json").write_text(answer["report"].get("text", "{}"))
        (out_dir / "labels.txt").write_text("\n".join(s.source.labels) + "\n")
        softmax = _ends_in_softmax(s.source.model)
        (out_dir / INTRINSICS).write_text(json.dumps(intrinsics(s.source.labels, s.source.spec.to_dict(), not softmax), indent=2))
        report = {k: v for k, v in answer["report"].items() if k != "text"}
        extra = {
            "imx500": {
                "chip_bytes": CHIP_BYTES,
                "memory": report,
                "mct_estimate": answer["estimate"],
                "seconds": answer["seconds"],
                "float_rebuild_max_dp": answer["float_max_dp"],
                "input_scale": INPUT_SCALE,
                "toolchain_python": str(_interpreter()),
                "note": memory_note(report),
            },
            "quantization": {"tool": "model_compression_toolkit", "target_platform": "imx500"},
        }
        return ConversionResult(self.files(), answer["tools"], extra)


def _ends_in_softmax(model: Any) -> bool:
    """Whether the network's output is already probabilities (Picamera2's intrinsics ``softmax``: apply one)."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax"


def memory_note(mem: dict[str, Any]) -> str:
    """``IMX500: 0.24 of 8.00 MiB on chip (4%), 7.76 MiB headroom``, from the compiler's memory report."""
    used, avail = mem.get("used_bytes"), mem.get("available_bytes")
    if not (used and avail):
        return "IMX500: the compiler's memory report gave no figures"
    return (f"IMX500: {used / 2**20:.2f} of {avail / 2**20:.2f} MiB on chip ({mem.get('utilization')}), "
            f"{(avail - used) / 2**20:.2f} MiB headroom")  # fmt: skip


def benchmark_figures(artifact: Path) -> dict[str, Any]:
    """``benchmark``'s row for an imx500 artifact: the sensor's memory from imxconv's report (no host latency: the
    network runs in the sensor; ``profile`` on the Pi reads its DNN time from get_kpi_info)."""
    from edgecnn.manifest import Manifest

    m = Manifest.load(artifact)
    imx = m.extra.get("imx500", {})
    mem = imx.get("memory", {})
    note = memory_note(mem) + "; no host latency (the network runs in the sensor: edgecnn profile --sensor on the Pi reads its DNN time)"
    return {"sensor_memory_bytes": mem.get("used_bytes"), "sensor_memory_available_bytes": mem.get("available_bytes"),
            "note": note, "runtime": "imx500 (sensor)"}  # fmt: skip
