"""Host side: the Keras 3 -> tf.keras 2.15 bridge: a model as a plain layer graph plus its weights by layer name.

Keras 3 ``.keras`` files do not load in tf.keras 2.15 (the only Keras Sony's IMX500 toolchain takes), so the model
crosses as data: ``describe`` (here, in edgecnn's Keras 3) flattens the functional graph, nested models included
(the zoo's MobileNets keep their base as a nested model), into ``[{name, class, config, inputs}]`` keeping only the
configuration keys both Keras versions read the same way, and saves each layer's weights under its name;
``rebuild`` (in the toolchain's worker, tf.keras 2.15) builds the same graph and copies the weights by name. A
layer class outside ``LAYERS`` is refused before anything is built, naming the first such layer; the worker then
checks that the rebuilt float model matches Keras 3 within 1e-5 on the parity images and refuses it otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import ConversionError

_CONV = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation", "use_bias")
_POOL = ("pool_size", "strides", "padding", "data_format")
LAYERS: dict[str, tuple[str, ...]] = {  # class -> the config keys that cross (the rest take tf.keras defaults)
    "InputLayer": (),
    "Conv2D": _CONV,
    "DepthwiseConv2D": (
        "kernel_size",
        "strides",
        "padding",
        "depth_multiplier",
        "data_format",
        "dilation_rate",
        "activation",
        "use_bias",
    ),  # fmt: skip
    "SeparableConv2D": (*_CONV[:6], "depth_multiplier", "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "Softmax": ("axis",),
    "Add": (),
    "Multiply": (),
    "Concatenate": ("axis",),
    "MaxPooling2D": _POOL,
    "AveragePooling2D": _POOL,
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "ZeroPadding2D": ("padding", "data_format"),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
    "Dropout": ("rate",),
}
# activations whose Keras 3 and tf.keras 2.15 definitions agree (Keras 3's hard_sigmoid is relu6(x + 3) / 6; 2.15's
# is 0.2x + 0.5: same name, another function)
ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "softmax", "tanh", "swish", "silu", "elu", "selu", "softplus")


def _history(arg: Any) -> list[str]:
    """The layer names a node's call arguments come from (Keras 3's ``__keras_tensor__`` records)."""
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__":
            return [arg["config"]["keras_history"][0]]
        return [n for v in arg.values() for n in _history(v)]
    if isinstance(arg, list | tuple):
        return [n for v in arg for n in _history(v)]
    return []


def _outputs(config: dict[str, Any]) -> list[str]:
    items = config["output_layers"]
    items = [items] if items and isinstance(items[0], str) else items
    return [i[0] for i in items]


def _input_names(config: dict[str, Any]) -> list[str]:
    items = config.get("input_layers", [])
    if items and isinstance(items[0], str):  # one input: ["name", 0, 0]
        return [items[0]]
    return [i[0] for i in items]


def _sources(layer: dict[str, Any], alias: dict[str, str]) -> list[str]:
    name, bound = layer["config"]["name"], layer.get("inbound_nodes") or []
    if len(bound) > 1:
        raise ConversionError(
            f"layer '{name}' ({layer['class_name']}) is called {len(bound)} times: the IMX500 bridge rebuilds layers used once"
        )
    return [alias.get(n, n) for n in _history(bound[0]["args"])] if bound else []


def flatten(
    config: dict[str, Any], fed: list[str] | None = None, prefix_map: dict[str, str] | None = None
) -> tuple[list[dict], dict[str, str]]:
    """A functional model's config -> (nodes in order, {nested model name: the node its output is}).

    ``fed``: for a nested model, the outer nodes that feed its inputs."""
    nodes: list[dict] = []
    alias: dict[str, str] = dict(prefix_map or {})
    inputs = _input_names(config)
    for layer in config["layers"]:
        name, cls = layer["config"]["name"], layer["class_name"]
        sources = _sources(layer, alias)
        if _nested(layer, sources, alias, nodes):
            continue
        if cls == "InputLayer" and fed is not None:  # a nested model's input: whatever feeds it outside
            alias[name] = fed[inputs.index(name)] if name in inputs else fed[0]
            continue
        if cls not in LAYERS:
            raise ConversionError(
                f"layer '{name}' is a {cls}, which the IMX500 bridge cannot rebuild in tf.keras 2.15",
                hint=f"the layers it rebuilds: {', '.join(LAYERS)}",
            )
        nodes.append({"name": name, "class": cls, "config": _config(name, cls, layer["config"]), "inputs": sources})
        alias.setdefault(name, name)
    return nodes, alias


def _nested(layer: dict[str, Any], sources: list[str], alias: dict[str, str], nodes: list[dict]) -> bool:
    """A nested functional model (the zoo's ``base``): its layers join ``nodes``, its name stands for its output."""
    if layer["class_name"] not in ("Functional", "Model", "Sequential") or "layers" not in layer["config"]:
        return False
    inner, inner_alias = flatten(layer["config"], sources, alias)
    nodes += inner
    alias.update(inner_alias)
    alias[layer["config"]["name"]] = inner_alias[_outputs(layer["config"])[0]]
    return True


def _config(name: str, cls: str, config: dict[str, Any]) -> dict[str, Any]:
    out = {k: config[k] for k in LAYERS[cls] if k in config}
    if cls == "InputLayer":
        out["shape"] = list(config.get("batch_shape") or config.get("batch_input_shape"))[1:]
    act = out.get("activation")
    if act is not None and (not isinstance(act, str) or act not in ACTIVATIONS):
        raise ConversionError(
            f"layer '{name}' ({cls}) uses the activation {act!r}, which the IMX500 bridge cannot carry to tf.keras 2.15 "
            "unchanged", hint=f"the activations it carries: {', '.join(ACTIVATIONS)}",
        )  # fmt: skip
    out["name"] = name
    return out


def describe(model: Any, out: Path) -> dict[str, Any]:
    """``model`` (Keras 3) as the graph the worker rebuilds; its weights saved by layer name into ``out`` (.npz)."""
    import numpy as np

    config = model.get_config()
    nodes, alias = flatten(config)
    outputs = [alias.get(n, n) for n in _outputs(config)]
    arrays: dict[str, Any] = {}
    for layer in _all_layers(model):
        for i, w in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{i}"] = np.asarray(w)
    np.savez(out, **arrays)
    return {"nodes": nodes, "outputs": outputs, "weights": str(out)}


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers += _all_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer]
    return layers


def rebuild(graph: dict[str, Any], front: Any = None) -> Any:
    """Worker side (tf.keras 2.15): the graph as a functional model, weights copied by layer name; ``front`` (a
    function of the input tensor) is put between the input and the first layer."""
    model = _functional(graph, front)
    _copy_weights(model, graph)
    return model


def _functional(graph: dict[str, Any], front: Any) -> Any:
    import tensorflow as tf

    layers = tf.keras.layers
    tensors: dict[str, Any] = {}
    model_inputs = []
    for node in graph["nodes"]:
        cfg = dict(node["config"])
        if node["class"] == "InputLayer":
            t = layers.Input(shape=tuple(cfg["shape"]), name=cfg["name"])
            model_inputs.append(t)
            t = front(t) if front else t
        else:
            args = [tensors[n] for n in node["inputs"]]
            layer = getattr(layers, node["class"])(**cfg)
            t = layer(args if node["class"] in ("Add", "Multiply", "Concatenate") else args[0])
        tensors[node["name"]] = t
    return tf.keras.Model(model_inputs, [tensors[n] for n in graph["outputs"]])


def _copy_weights(model: Any, graph: dict[str, Any]) -> None:
    """The saved arrays of each layer, by name and in their saved order, into the rebuilt layer of that name."""
    import numpy as np

    with np.load(graph["weights"]) as weights:
        by_layer: dict[str, list] = {}
        for key in weights.files:
            name, _, i = key.rpartition("/")
            by_layer.setdefault(name, []).append((int(i), weights[key]))
    ours = {node["name"] for node in graph["nodes"]}
    for layer in (layer for layer in model.layers if layer.name in ours):
        saved = [w for _, w in sorted(by_layer.get(layer.name, []), key=lambda p: p[0])]
        if len(saved) != len(layer.weights):
            raise ConversionError(
                f"layer '{layer.name}': {len(saved)} saved weight arrays, tf.keras 2.15 expects {len(layer.weights)}"
            )
        if saved:
            layer.set_weights(saved)
