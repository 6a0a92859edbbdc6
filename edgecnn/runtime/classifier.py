"""``Classifier``: verified artifact + manifest preprocessing + a backend -> top-k labels."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices import DeviceProfile
from edgecnn.errors import ArtifactError
from edgecnn.preprocess import preprocess, quantize_table, resize_uint8
from edgecnn.runtime.select import Selection, select_runtime


@dataclass
class Prediction:
    top: list[tuple[str, float]]
    probabilities: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "top": [{"label": lab, "p": round(p, 6)} for lab, p in self.top],
            "latency_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


class Classifier:
    """Classify images with an edgecnn artifact.

    Args:
        artifact: an artifact folder, or a conversion output folder (the profile picks one).
        profile: device profile whose runtime chain and threads apply.
        runtime, accelerator: force one runtime (e.g. "onnxruntime", "CUDA").
        top_k: how many labels to return.
    """

    def __init__(
        self,
        artifact: str | Path,
        *,
        profile: DeviceProfile | None = None,
        runtime: str | None = None,
        accelerator: str | None = None,
        threads: int | None = None,
        top_k: int = 3,
        allow_fallback: bool = True,
        **options: Any,
    ) -> None:
        self._setup(
            select_runtime(
                artifact,
                profile,
                runtime=runtime,
                accelerator=accelerator,
                threads=threads,
                allow_fallback=allow_fallback,
                **options,
            ),
            top_k,
        )

    @classmethod
    def from_selection(cls, selection: Selection, *, top_k: int = 3) -> Classifier:
        """A classifier over a runtime already chosen and opened (``select_runtime``)."""
        self = cls.__new__(cls)
        self._setup(selection, top_k)
        return self

    def _setup(self, selection: Selection, top_k: int) -> None:
        self.selection = selection
        self.backend = selection.backend
        self.manifest = selection.manifest
        self.labels = self.manifest.labels
        self.spec = self.manifest.preprocess
        self.top_k = max(1, min(top_k, len(self.labels)))
        out_dim = self.backend.output.shape[-1]
        if out_dim not in (-1, len(self.labels)):
            self.close()
            raise ArtifactError(f"the model outputs {out_dim} classes but the manifest lists {len(self.labels)} labels")
        self._buffer = np.empty((1, *self.spec.input_shape), dtype=np.float32)
        # an int8/uint8-input model gets its input by table lookup from the resized pixels: the same tensor as
        # preprocess + quantise, with no float work per frame
        self._table = None
        inp = self.backend.input
        if inp.quantized and hasattr(self.backend, "run_quantized"):
            self._table = quantize_table(self.spec, inp.scale, inp.zero_point, inp.dtype)
            self._qbuffer = np.empty((1, *self.spec.input_shape), dtype=inp.dtype)
            self._same_table = bool((self._table == self._table[0]).all())

    def describe(self) -> dict[str, Any]:
        return self.backend.describe() | {
            "artifact": str(self.manifest.directory),
            "format": self.manifest.format,
            "precision": self.manifest.precision,
            "skipped": self.selection.skipped,
        }

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Run already-preprocessed float32 NHWC inputs one by one (as on the device)."""
        out = np.empty((len(batch), len(self.labels)), dtype=np.float32)
        for i in range(len(batch)):
            out[i] = self.backend.run(batch[i : i + 1])[0]
        return out

    def classify(self, image: np.ndarray, *, source_order: str = "BGR") -> Prediction:
        """Preprocess one raw image with the manifest's spec, run it, return top-k labels."""
        t0 = time.perf_counter()
        if self._table is not None:
            pixels = resize_uint8(image, self.spec, source_order=source_order)
            if self._same_table:
                np.take(self._table[0], pixels, out=self._qbuffer[0])
            else:
                for c in range(pixels.shape[2]):
                    self._qbuffer[0, :, :, c] = self._table[c][pixels[:, :, c]]
            t1 = time.perf_counter()
            probs = self.backend.run_quantized(self._qbuffer)[0]
        else:
            self._buffer[0] = preprocess(image, self.spec, source_order=source_order)
            t1 = time.perf_counter()
            probs = self.backend.run(self._buffer)[0]
        t2 = time.perf_counter()
        k = self.top_k
        idx = np.argpartition(-probs, k - 1)[:k] if k < len(probs) else np.arange(len(probs))
        idx = idx[np.argsort(-probs[idx])]
        top = [(self.labels[i], float(probs[i])) for i in idx]
        t3 = time.perf_counter()
        return Prediction(
            top, probs, {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        )

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
