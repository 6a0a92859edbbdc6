"""A digit classifier that plain int8 breaks in every format, the way real networks get there: a few activation
channels with a range far wider than the rest.

    python tools/outlier_model.py OUT        # OUT/model.keras, labels.txt, preprocess.json, heldout/, calibration/

A small CNN is trained on scikit-learn's bundled digits (conv1 -> conv2 -> conv3 -> global average -> dense; about
96% held-out after 15 epochs, 30 s on 2 cores). Then two of conv2's 32 output channels are scaled by ``GAIN`` (their
kernel and bias) and conv3's weights reading those channels by 1/GAIN. ReLU is positively homogeneous
(relu(g z) = g relu(z) for g > 0), so the float model computes the same function (its outputs move by float
rounding only), but conv2's output now has two channels 64 times wider than the others: the outlier channels that
batch normalisation's scales and unnormalised residual paths leave in real networks, and that cross-layer
equalisation exists to undo. Every format quantises activations per tensor, so the other 30 channels of that
tensor keep a handful of int8 levels: plain int8 collapses in TFLite, ONNX Runtime and OpenVINO alike, and
leaving conv2 and conv3 in float recovers it. The converters are not touched.

The held-out images (20% of the digits, stratified) and 300 calibration images (from the training split) are
written as image folders, as a user's would be.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

GAIN = 256.0
OUTLIER_CHANNELS = (3, 17)
EPOCHS = 15


def _write_folder(folder: Path, images: list[np.ndarray], labels: np.ndarray, names: list[str]) -> None:
    import cv2

    for i, (img, y) in enumerate(zip(images, labels)):
        d = folder / names[int(y)]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:04d}.png"), img)


def build(out: str | Path, *, epochs: int = EPOCHS, gain: float = GAIN, seed: int = 0) -> dict:
    """Train, add the outlier channels, write the model and its data into ``out``; the float accuracies."""
    import keras

    from edgecnn.host.data.bundled import load_bundled
    from edgecnn.preprocess import PreprocessSpec, preprocess_batch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_bundled("digits")
    train, _, test = ds.split(validation=0.0, test=0.2, seed=seed)
    spec = PreprocessSpec(height=32, width=32, channels=1, color_order="GRAY")
    x_train = preprocess_batch(train.images, spec, source_order="GRAY")
    x_test = preprocess_batch(test.images, spec, source_order="GRAY")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="outliers")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, train.labels, batch_size=32, epochs=epochs, verbose=0)
    before = float(np.mean(model.predict(x_test, verbose=0).argmax(1) == test.labels))
    probs_before = model.predict(x_test, verbose=0)

    conv2, conv3 = model.get_layer("conv2"), model.get_layer("conv3")
    k2, b2 = conv2.get_weights()
    k3, b3 = conv3.get_weights()
    for c in OUTLIER_CHANNELS:
        k2[..., c] *= gain
        b2[c] *= gain
        k3[:, :, c, :] /= gain
    conv2.set_weights([k2, b2])
    conv3.set_weights([k3, b3])
    probs = model.predict(x_test, verbose=0)
    after = float(np.mean(probs.argmax(1) == test.labels))

    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(ds.class_names) + "\n")
    spec.save(out / "preprocess.json")
    _write_folder(out / "heldout", test.images, test.labels, ds.class_names)
    pick = np.random.default_rng(seed).permutation(len(train))[:300]
    _write_folder(out / "calibration", [train.images[i] for i in pick], train.labels[pick], ds.class_names)
    facts = {
        "float_accuracy": after,
        "before_outliers": before,
        "max_abs_dp_from_rescaling": float(np.abs(probs - probs_before).max()),
        "gain": gain,
        "outlier_channels": list(OUTLIER_CHANNELS),
        "heldout": len(test),
    }
    (out / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


if __name__ == "__main__":
    print(json.dumps(build(sys.argv[1]), indent=2))
