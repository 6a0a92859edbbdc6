"""Host side: int8 with chosen layers kept in float, and per-layer sensitivity, in each format with its own tooling.

When plain int8 fails the parity gate, the way out is to leave the few layers that carry the error in float.
Each format has a mechanism for it, and each is used here:

* TFLite: the converter calibrates once (``_experimental_calibrate_only``, as TF's QuantizationDebugger does) and
  ``mlir_quantize`` quantises the calibrated model with ``denylisted_nodes`` (the debugger's selective
  quantisation): a variant costs milliseconds, not a calibration.
* ONNX Runtime: ``quantize_static`` with ``nodes_to_exclude`` (or ``nodes_to_quantize``), reading ranges
  calibrated once from a range cache.
* OpenVINO: ``nncf.quantize`` with an ``IgnoredScope`` of node names. OpenVINO's SavedModel frontend renames the
  convolutions (``Convolution_30``) while its ONNX frontend keeps tf2onnx's names, so a selective OpenVINO int8 is
  converted from the ONNX export; plain int8 still comes from the SavedModel.

Users name layers as Keras does. Every format's node names carry the Keras layer as a path segment (TFLite
``lenet5_1/c1_1/BiasAdd;...``, tf2onnx ``PartitionedCall/lenet5_1/c1_1/BiasAdd``, OpenVINO from ONNX
``PartitionedCall/lenet5_1/c1_1/BiasAdd/WithoutBiases``; Keras's export adds ``_1``), so ``NodeMap`` maps nodes to
layers by that segment, the deepest one that names a layer (a nested base model's layers are found too).

**Sensitivity** is measured per weighted layer (convolutions and dense layers) as the error of the model with
*only that layer quantised*, against Keras, on the calibration images (never the held-out images the gate
judges): mean |dp| of the probabilities and top-1 agreement. Alone, a layer shows the error it brings in itself;
left out of an otherwise quantised model (the other way round) it often shows nothing, because two layers that
share an outlier tensor (the producer's output is the consumer's input) each hide the other's recovery. The
ranking is what ``--keep-float auto`` walks.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConfigError, ConversionError, EdgeCNNError, first_line
from edgecnn.formats import Format, Precision

WEIGHTED = {"Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense"}
SENSITIVITY_IMAGES = 128  # calibration images each variant is judged on
_SUFFIX = re.compile(r"_\d+$")


def run_model(fmt: Format, path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Probabilities of a model file on ``x`` through the device's backend, in batches of 32."""
    from edgecnn.formats import runtime_for
    from edgecnn.runtime.base import open_backend

    with open_backend(runtime_for(fmt), path, threads=threads) as backend:
        return np.concatenate([backend.run(x[i : i + 32]) for i in range(0, len(x), 32)])


def keras_layers(model: Any) -> dict[str, str]:
    """Every layer of ``model`` by name -> class name, the layers of nested models included (not the models)."""
    out: dict[str, str] = {}
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out |= keras_layers(layer)
        else:
            out[layer.name] = type(layer).__name__
    return out


def layer_of(node: str, layers: dict[str, str]) -> str | None:
    """The Keras layer a node belongs to: the deepest path segment (before the op's own name) that names a layer,
    with the ``_N`` the export adds taken off first."""
    first = node.split(";")[0]
    segments = first.split("/")[:-1]
    for seg in reversed(segments):
        stripped = _SUFFIX.sub("", seg)
        if stripped in layers:
            return stripped
        if seg in layers:
            return seg
    return None


class NodeMap:
    """A format's node names grouped by Keras layer, in graph order."""

    def __init__(self, nodes: list[str], layers: dict[str, str], fmt: str) -> None:
        self.nodes, self.layers, self.format = nodes, layers, fmt
        self.by_layer: dict[str, list[str]] = {}
        for n in nodes:
            owner = layer_of(n, layers)
            if owner is not None:
                self.by_layer.setdefault(owner, []).append(n)

    def weighted(self) -> list[str]:
        """The layers with weights that the format has nodes for, in graph order: the sensitivity candidates."""
        return [name for name in self.by_layer if self.layers.get(name) in WEIGHTED]

    def nodes_for(self, float_layers: list[str]) -> list[str]:
        """The nodes of ``float_layers`` and, after each, the nodes that only move or pool its output (up to the
        next layer with weights): a float layer's output stays float until a quantised layer reads it, instead of
        being quantised again at a max-pool (TFLite quantises every operator it is not told to leave alone)."""
        out: list[str] = []
        for name in float_layers:
            nodes = self.by_layer.get(name)
            if not nodes:
                raise ConfigError(
                    f"--keep-float: layer '{name}' has no operator in the {self.format} model (folded or removed at conversion)",
                    hint="choose among: " + ", ".join(self.weighted()),
                )
            out += nodes + self._followers(nodes[-1])
        return list(dict.fromkeys(out))

    def _followers(self, last: str) -> list[str]:
        found = []
        for n in self.nodes[self.nodes.index(last) + 1 :]:
            owner = layer_of(n, self.layers)
            if owner is not None and self.layers[owner] in WEIGHTED:
                break
            found.append(n)
        return found

    def all_but(self, layer: str) -> list[str]:
        mine = set(self.by_layer.get(layer, []))
        return [n for n in self.nodes if n not in mine]


def check_layer_names(names: list[str], layers: dict[str, str]) -> None:
    """Refuse an unknown layer name, with the model's own names to choose from."""
    from edgecnn.registry import did_you_mean

    for name in names:
        if name not in layers:
            weighted = [n for n, kind in layers.items() if kind in WEIGHTED]
            raise ConfigError(
                f"--keep-float: the model has no layer '{name}'.{did_you_mean(name, list(layers))}",
                hint="its layers with weights: " + ", ".join(weighted[:40]) + (" ..." if len(weighted) > 40 else ""),
            )


class Selective(ABC):
    """One format's int8 of one source, calibrated once, with any set of layers left in float."""

    format: Format
    measuring = False
    how: str = ""  # the toolchain's own mechanism, for the manifest

    @property
    def model_name(self) -> str:
        from edgecnn.formats import FORMATS

        return FORMATS[self.format].files[0][1]

    def __init__(self, session: Any, precision: Precision, weights: str) -> None:
        self.session, self.precision, self.weights = session, precision, weights
        self.tmp = Path(tempfile.mkdtemp(prefix=f"edgecnn-selective-{self.format}-", dir=session.workdir))
        self._count = 0
        self._ranked: list[dict[str, Any]] | None = None
        with self._guard("preparing selective quantisation"):
            names = self._node_names()
        self.nodes = NodeMap(names, keras_layers(session.source.model), str(self.format))

    @contextlib.contextmanager
    def _guard(self, step: str):
        """The quantisers and runtimes raise anything on a graph they cannot handle: one ConversionError line."""
        try:
            yield
        except (ConfigError, ConversionError):
            raise
        except EdgeCNNError as exc:
            raise ConversionError(f"{self.format}/{self.precision}: {step}: {exc.message}") from exc
        except Exception as exc:  # noqa: BLE001 - see above
            raise ConversionError(f"{self.format}/{self.precision}: {step}: {first_line(exc, with_type=True)}") from exc

    @abstractmethod
    def _node_names(self) -> list[str]: ...

    @abstractmethod
    def _write(self, out_dir: Path, *, exclude: list[str]) -> dict[str, Any]:
        """The model files in ``out_dir`` with the nodes ``exclude`` left in float; the manifest's tools."""

    def write(self, out_dir: Path, float_layers: list[str]) -> dict[str, Any]:
        exclude = self.nodes.nodes_for(float_layers)
        with self._guard("quantising" + (f" with {', '.join(float_layers)} in float" if float_layers else "")):
            return self._write(out_dir, exclude=exclude)

    def probabilities(self, exclude: list[str], x: np.ndarray) -> np.ndarray:
        """The variant with ``exclude`` in float, run on ``x`` by the device's backend."""
        self._count += 1
        out = self.tmp / f"v{self._count}"
        out.mkdir()
        try:
            with self._guard("a sensitivity variant"):
                self._write(out, exclude=exclude)
                return run_model(self.format, out / self.model_name, x)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def sensitivity(self, reference: np.ndarray, x: np.ndarray, say=lambda s: None) -> list[dict[str, Any]]:
        """Each weighted layer quantised alone: its error against ``reference`` on ``x``, the largest first; the
        last row is every layer quantised. Measured once per conversion."""
        if self._ranked is None:
            self._ranked = self._measure(reference, x, say)
        return self._ranked

    def _measure(self, reference: np.ndarray, x: np.ndarray, say) -> list[dict[str, Any]]:
        self.measuring = True  # float at the edges where the format has a choice: the layer's own error alone
        try:
            return self._rank(reference, x, say)
        finally:
            self.measuring = False

    def _rank(self, reference: np.ndarray, x: np.ndarray, say) -> list[dict[str, Any]]:
        rows = []
        layers = self.nodes.weighted()
        for i, layer in enumerate(layers, 1):
            say(f"{self.format}/{self.precision} sensitivity: {layer} ({i}/{len(layers)})")
            probs = self.probabilities(self.nodes.all_but(layer), x)
            rows.append(_error(layer, self.nodes.layers[layer], probs, reference))
        plain = _error("(every layer)", "", self.probabilities([], x), reference)
        rows.sort(key=lambda r: (-r["mean_abs_dp"], r["agreement"]))
        for rank, r in enumerate(rows, 1):
            r["rank"] = rank
        return [*rows, plain | {"rank": None}]

    def check(self, reference: np.ndarray, x: np.ndarray, say=lambda s: None) -> dict[str, float]:
        """The brute-force view the other way round: each weighted layer left in float (with what only moves its
        output), every other layer quantised; mean |dp| against ``reference`` (the lower, the more it recovers)."""
        out = {}
        layers = self.nodes.weighted()
        for i, layer in enumerate(layers, 1):
            say(f"{self.format}/{self.precision} check: all but {layer} quantised ({i}/{len(layers)})")
            out[layer] = float(np.mean(np.abs(self.probabilities(self.nodes.nodes_for([layer]), x) - reference)))
        return out

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _error(layer: str, kind: str, probs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    return {
        "layer": layer,
        "type": kind,
        "mean_abs_dp": float(np.mean(np.abs(probs - reference))),
        "max_abs_dp": float(np.max(np.abs(probs - reference))),
        "agreement": float(np.mean(probs.argmax(1) == reference.argmax(1))),
    }


def selective_convert(converter: Any, r: Any, out_dir: Path, say=lambda s: None) -> Any:
    """A converter's ``convert`` for a request with ``keep_float`` or ``sensitivity``: the model from the format's
    Selective, the float layers and the trade in the manifest's extra, the sensitivity report beside the model."""
    from edgecnn.host.convert.base import ConversionResult

    sel = converter.selective(r)
    tools = sel.write(out_dir, list(r.keep_float))
    result = ConversionResult(converter.files(), tools, {"quantization": {"weights": r.weights}})
    if r.keep_float:
        result.extra["keep_float"] = {
            "layers": list(r.keep_float),
            "nodes": len(sel.nodes.nodes_for(list(r.keep_float))),
            "how": sel.how,
            "steps": list(r.steps),
        }
    if r.sensitivity:
        say = getattr(converter.session, "say", None) or say
        x, reference = converter.session.calibration_reference(SENSITIVITY_IMAGES)
        rows = sel.sensitivity(reference, x, say)
        check = sel.check(reference, x, say) if r.sensitivity_check else None
        result.files |= write_report(rows, out_dir, r.label, len(x), check)
        result.extra["sensitivity"] = {"ranked": [row["layer"] for row in rows if row["rank"] is not None]}
    return result


def write_report(
    rows: list[dict[str, Any]], out_dir: Path, label: str, n_images: int, check: dict[str, float] | None = None
) -> dict[str, dict[str, str]]:
    """sensitivity.json, .md and a bar plot (when matplotlib is there) in ``out_dir``; the manifest's file entries.
    ``check``: the brute-force figures (each layer alone in float), as a column and a rank."""
    import json

    from edgecnn.markdown import table

    ranked = [dict(r) for r in rows if r["rank"] is not None]
    plain = next(r for r in rows if r["rank"] is None)
    if check:
        order = sorted(check, key=check.get)  # the most recovering first
        for r in ranked:
            r["check_mean_abs_dp"], r["check_rank"] = check[r["layer"]], order.index(r["layer"]) + 1
    doc = {
        "schema": "edgecnn.sensitivity",
        "schema_version": 1,
        "artifact": label,
        "measured": "each weighted layer quantised alone (the rest in float), against Keras, on the first "
        f"{n_images} calibration images: mean |dp| of the probabilities and top-1 agreement",
        "every_layer_quantised": {k: plain[k] for k in ("mean_abs_dp", "max_abs_dp", "agreement")},
        "layers": ranked,
        "check": None
        if not check
        else {
            "measured": "each weighted layer left in float (with the operators that only move its output), every "
            "other layer quantised: mean |dp| (the lower, the more that layer alone recovers)",
            "top_layer_check_rank": ranked[0]["check_rank"] if ranked else None,
        },
    }
    (out_dir / "sensitivity.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        f"# Per-layer int8 sensitivity: {label}",
        "",
        doc["measured"] + ". Largest first: the layers `--keep-float auto` leaves in float first.",
        "",
        f"Every layer quantised: mean |dp| {plain['mean_abs_dp']:.4f}, top-1 agreement {plain['agreement']:.1%}.",
        "",
        *table(
            ["rank", "layer", "type", "mean abs dp", "max abs dp", "top-1 agreement"],
            [
                [
                    str(r["rank"]),
                    r["layer"],
                    r["type"],
                    f"{r['mean_abs_dp']:.4f}",
                    f"{r['max_abs_dp']:.3f}",
                    f"{r['agreement']:.1%}",
                ]
                for r in ranked
            ],
        ),
    ]
    (out_dir / "sensitivity.md").write_text("\n".join(md) + "\n")
    files = {"sensitivity": {"path": "sensitivity.json"}, "sensitivity_report": {"path": "sensitivity.md"}}
    if _plot(ranked, out_dir / "sensitivity.png", label):
        files["sensitivity_plot"] = {"path": "sensitivity.png"}
    return files


def _plot(ranked: list[dict[str, Any]], path: Path, label: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = ranked[:30]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.2))
    ax.barh([r["layer"] for r in shown][::-1], [r["mean_abs_dp"] for r in shown][::-1], color="#c0504d")
    ax.set_xlabel("mean |dp| with only this layer quantised")
    ax.set_title(f"{label}: per-layer sensitivity" + (f" (top 30 of {len(ranked)})" if len(ranked) > 30 else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
