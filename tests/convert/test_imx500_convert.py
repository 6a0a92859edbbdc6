"""The IMX500 conversion end to end (slow): a small RGB CNN from a recipe -> a gated, signed imx500-int8 artifact;
the memory gate; the bridge on the zoo's architectures. Needs `edgecnn toolchain install imx500` (CI runs it first)
and a Java 17 runtime; skipped with that reason where they are missing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgecnn.host import toolchain

REPO = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if toolchain.record_of("imx500") is None:
        return "the imx500 toolchain is not installed (edgecnn toolchain install imx500)"
    try:
        toolchain.check_java(toolchain.IMX500)
    except toolchain.ToolchainError as exc:
        return exc.message
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    """recipes/lenet5-digits-rgb.yaml trained once (about 1.5 min on 2 cores)."""
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import train

    return train(load_recipe(REPO / "recipes" / "lenet5-digits-rgb.yaml"), tmp_path_factory.mktemp("runs") / "rgb", quiet=True)


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("model_signing.verifying", reason='needs the sign extra: pip install "edgecnn[sign]"')
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = tmp_path_factory.mktemp("keys")
    key = ec.generate_private_key(ec.SECP256R1())
    (folder / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))  # fmt: skip
    (folder / "k.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    return folder / "k.pem", folder / "k.pub"


def test_convert_makes_a_gated_signed_imx500_artifact(rgb_run, signing_key, tmp_path):
    from edgecnn.host.convert.api import convert
    from edgecnn.host.convert.imx500 import benchmark_figures
    from edgecnn.manifest import Manifest
    from edgecnn.runtime import Classifier, selfcheck
    from edgecnn.signing import verify_folder

    out = tmp_path / "aicam"
    summary = convert(rgb_run, "rpi-aicam", precisions=["imx500/int8"], out=out, sign_key=signing_key[0], max_drop=1.0)
    row = summary.rows[0]
    assert (row.format, row.precision, row.status) == ("imx500", "int8", "ok"), (row.error, row.notes)
    art = out / "imx500-int8"
    names = {p.name for p in art.iterdir()}
    assert {"packerOut.zip", "labels.txt", "intrinsics.json", "imx500_emulation.tflite", "memory_report.json",
            "selfcheck.npz", "edgecnn.json", "edgecnn.sig"} <= names  # fmt: skip
    verify_folder(out, signing_key[1])
    m = Manifest.load(art)
    imx = m.extra["imx500"]
    assert imx["memory"]["fits"] is True and 0 < imx["memory"]["used_bytes"] < imx["memory"]["available_bytes"]
    assert imx["float_rebuild_max_dp"] <= 1e-5
    assert set(imx["seconds"]) == {"rebuild", "estimate", "quantise", "export", "compile"}
    assert {"model-compression-toolkit", "imx500-converter", "tensorflow"} <= set(m.tools)
    assert m.input["quantization"] == {"scale": 1 / 256, "zero_point": 0} and m.input["dtype"] == "uint8"
    # the parity gate: MCT's quantised network (fed the sensor's p/256) against Keras on the held-out digits
    assert m.parity["passed"] and m.parity["n"] == 270
    assert m.parity["agreement"] >= 0.97 and m.parity["keras_accuracy"] - m.parity["artifact_accuracy"] <= 0.01
    assert any("MiB headroom" in n for n in row.notes)
    net = json.loads((art / "intrinsics.json").read_text())["intrinsics"]
    assert net["task"] == "classification" and net["labels"] == m.labels and net["softmax"] is False  # ends in softmax
    with Classifier(art, allow_fallback=False) as clf:
        check = selfcheck.run(clf)
        assert clf.describe()["runtime"] == "imx500" and "host emulation" in clf.describe()["version"]
    assert check.passed and check.n == m.self_check["n"]
    figures = benchmark_figures(art)
    assert figures["sensor_memory_bytes"] == imx["memory"]["used_bytes"] and "headroom" in figures["note"]


def test_a_network_that_does_not_fit_is_refused_before_compiling(tmp_path):
    """9.8 M int8 weights (a 32768 x 300 dense layer) on an 8 MiB chip: MCT's estimate refuses it, no compile."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from edgecnn.host.convert.api import convert
    from edgecnn.preprocess import PreprocessSpec

    inp = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.Dense(300, activation="relu", name="huge")(keras.layers.Flatten(name="flat")(x))
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    path = tmp_path / "big.keras"
    keras.Model(inp, out).save(path)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (32, 64, 64, 3)).astype(np.float32))
    summary = convert(path, "rpi-aicam", precisions=["imx500/int8"], out=tmp_path / "out", calibration=str(tmp_path / "calib.npy"),
                      preprocess=PreprocessSpec(height=64, width=64), labels=["a", "b", "c"])  # fmt: skip
    row = summary.rows[0]
    assert row.status == "ERROR" and row.path is None
    assert "does not fit on the IMX500: MCT estimates 9.8" in row.error and "refused before compiling" in row.error
    assert not (tmp_path / "out" / "imx500-int8").exists()


ZOO = [("lenet5", 32, {}), ("squeezenet1_1", 64, {}), ("mobilenet_v1", 64, {"alpha": 0.25}),
       ("mobilenet_v2", 64, {"alpha": 0.35}), ("resnet50", 32, {})]  # fmt: skip


def test_the_bridge_rebuilds_every_zoo_architecture_exactly_in_tf_keras_2_15(tmp_path):
    """Each architecture crosses as a graph, is rebuilt on the toolchain's interpreter (the scheduler's hook) with
    its weights by name, and computes what Keras 3 computes; MobileNet V3's hard-swish is refused by name."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import edgecnn.host.convert.imx500  # noqa: F401 - registers the imx500 worker and its interpreter
    from edgecnn.errors import ConversionError
    from edgecnn.host.convert.imx500_bridge import describe
    from edgecnn.host.convert.scheduler import Job, Scheduler
    from edgecnn.host.models.zoo import create_model

    scheduler = Scheduler()
    try:
        for name, size, opts in ZOO:
            model = create_model(name, input_size=size, channels=3, num_classes=4, **opts)
            x = np.random.default_rng(0).normal(size=(8, size, size, 3)).astype(np.float32)
            np.save(tmp_path / f"{name}_x.npy", x)
            np.save(tmp_path / f"{name}_p.npy", model.predict(x, verbose=0))
            params = {"graph": describe(model, tmp_path / f"{name}.npz"), "parity_x": str(tmp_path / f"{name}_x.npy"),
                      "keras_probs": str(tmp_path / f"{name}_p.npy")}  # fmt: skip
            scheduler.add([Job(name, "imx500", "edgecnn.host.convert.imx500_worker:rebuild_check_job", params)])
            answer = scheduler.result(name)
            assert answer["max_dp"] <= 1e-5, (name, answer)
    finally:
        scheduler.close()
    v3 = create_model("mobilenet_v3_small", input_size=64, channels=3, num_classes=4, alpha=0.75)
    with pytest.raises(ConversionError, match="uses the activation 'hard_silu'"):
        describe(v3, tmp_path / "v3.npz")
