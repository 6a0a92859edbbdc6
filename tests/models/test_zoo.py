"""Model zoo and inspect: the textbook figures."""

from __future__ import annotations

import pytest

from edgecnn.errors import ModelError, UnknownNameError
from edgecnn.host.models import MODELS, create_model, get_spec, min_input_size
from edgecnn.host.models.inspect import analyse, conv_geometry
from edgecnn.host.models.zoo import conv_output_size


def test_lenet5_exact_layers():
    r = analyse(create_model("lenet5"))
    assert [layer.params for layer in r.layers] == [156, 0, 2416, 0, 0, 48120, 10164, 850]
    assert [layer.output_shape for layer in r.layers] == [
        (28, 28, 6),
        (14, 14, 6),
        (10, 10, 16),
        (5, 5, 16),
        (400,),
        (120,),
        (84,),
        (10,),
    ]
    assert r.total_params == 61706
    assert [layer.type for layer in r.layers][:2] == ["Conv2D", "AveragePooling2D"]
    assert r.total_macs == 28 * 28 * 25 * 6 + 10 * 10 * 25 * 6 * 16 + 400 * 120 + 120 * 84 + 84 * 10
    assert r.peak_activation.name == "c1" and r.peak_activation.activation_bytes == 28 * 28 * 6 * 4


def test_textbook_output_size_formula():
    assert conv_output_size(32, 5, 1, 2) == 32
    assert conv_output_size(227, 11, 4, 0) == 55
    assert conv_geometry((28, 28), (5, 5), (1, 1), "same") == (28, 28)
    assert conv_geometry((7, 7), (3, 3), (2, 2), "same") == (4, 4)


def test_textbook_conv_params_and_bottleneck_macs():
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.ZeroPadding2D(2)(inp)
    m = keras.Model(inp, keras.layers.Conv2D(10, 5)(x))
    r = analyse(m)
    assert r.layers[-1].output_shape == (32, 32, 10) and r.total_params == 760

    inp = keras.Input((28, 28, 192))
    direct = analyse(keras.Model(inp, keras.layers.Conv2D(32, 5, padding="same")(inp)))
    assert direct.total_macs == 120_422_400  # ~120.4 M
    b = keras.layers.Conv2D(16, 1)(inp)
    bottleneck = analyse(keras.Model(inp, keras.layers.Conv2D(32, 5, padding="same")(b)))
    assert [layer.macs for layer in bottleneck.layers] == [2_408_448, 10_035_200]  # 2.4 M + 10.0 M = 12.4 M


@pytest.mark.parametrize(
    "name, params, macs",
    [
        ("mobilenet_v2", 3.5e6, 300e6),
        ("mobilenet_v1", 4.2e6, 569e6),
        ("squeezenet1_1", 1.235e6, 349e6),
    ],
)
def test_published_figures_within_3_percent(name, params, macs):
    r = analyse(create_model(name))
    assert r.total_params == pytest.approx(params, rel=0.03)
    assert r.total_macs == pytest.approx(macs, rel=0.03)
    assert r.total_params == get_spec(name).reference["params"] and r.total_macs == get_spec(name).reference["macs"]


@pytest.mark.parametrize("name", ["squeezenet1_0", "mobilenet_v3_small", "mobilenet_v3_large", "alexnet"])
def test_reference_table_matches_built_models(name):
    r = analyse(create_model(name))
    assert (r.total_params, r.total_macs) == (get_spec(name).reference["params"], get_spec(name).reference["macs"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "inception_v3"])
def test_big_classics_build(name):
    r = analyse(create_model(name, num_classes=10, input_size=get_spec(name).min_size or 75))
    assert r.layers[-1].output_shape == (10,)


def test_small_mobilenets_and_heads():
    m = create_model("mobilenet_v2", num_classes=5, input_size=64, alpha=0.35)
    assert m.output_shape == (None, 5) and m.input_shape == (None, 64, 64, 3)
    assert m.get_layer("base").name == "base" and m.layers[-1].name == "predictions"
    m3 = create_model("mobilenet_v3_small", num_classes=4, input_size=64, channels=1, alpha=0.75)
    assert m3.input_shape == (None, 64, 64, 1)
    assert not any(type(layer).__name__ == "Rescaling" for layer in m3.get_layer("base").layers)
    modern = create_model("lenet5", variant="modern")
    assert any(type(layer).__name__ == "BatchNormalization" for layer in modern.layers)


def test_impossible_sizes_name_the_minimum():
    with pytest.raises(ModelError, match="lenet5 needs an input of at least 16x16; received 8x8"):
        create_model("lenet5", input_size=8)
    need = min_input_size(get_spec("squeezenet1_1"))
    with pytest.raises(ModelError, match=f"squeezenet1_1 needs an input of at least {need}x{need}"):
        create_model("squeezenet1_1", input_size=need - 1)
    assert create_model("squeezenet1_1", input_size=need, num_classes=3).output_shape == (None, 3)


def test_unknown_model_and_bad_options():
    with pytest.raises(UnknownNameError, match="Did you mean 'mobilenet_v2'"):
        create_model("mobilenetv2")
    with pytest.raises(ModelError, match="invalid option"):
        create_model("lenet5", nonsense=1)
    with pytest.raises(ModelError, match="variant must be"):
        create_model("lenet5", variant="fancy")
    with pytest.raises(ModelError, match="no ImageNet weights are published for lenet5"):
        create_model("lenet5", weights="imagenet")
    with pytest.raises(ModelError, match="weights file not found"):
        create_model("lenet5", weights="/nonexistent.weights.h5")
    assert len(MODELS) == 11


def test_weights_file_roundtrip_and_wrong_architecture(tmp_path):
    m = create_model("lenet5")
    m.save_weights(tmp_path / "l.weights.h5")
    m2 = create_model("lenet5", weights=tmp_path / "l.weights.h5")
    assert all((a == b).all() for a, b in zip(m.get_weights(), m2.get_weights()))
    m.save(tmp_path / "l.keras")
    m3 = create_model("lenet5", weights=tmp_path / "l.keras")
    assert all((a == b).all() for a, b in zip(m.get_weights(), m3.get_weights()))
    with pytest.raises(ModelError, match="does not fit lenet5"):
        create_model("lenet5", num_classes=5, weights=tmp_path / "l.weights.h5")
    with pytest.raises(ModelError, match="does not fit squeezenet1_1"):
        create_model("squeezenet1_1", num_classes=10, input_size=32, channels=1, weights=tmp_path / "l.keras")


def test_imagenet_offline_says_which_file_to_put_where(monkeypatch, tmp_path):
    """Offline (as here), Keras's download fails; the error names the file and the cache folder."""
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(fname, origin=None, **kw):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    import keras.src.applications.mobilenet_v2 as mv2

    monkeypatch.setattr(mv2.file_utils, "get_file", offline)
    with pytest.raises(ModelError) as exc:
        create_model("mobilenet_v2", input_size=96, alpha=0.35, weights="imagenet", num_classes=3)
    text = str(exc.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in text
    assert str(tmp_path / "models") in text


def test_imagenet_from_local_cache(monkeypatch, tmp_path):
    """Once the file is in the Keras cache, ImageNet weights load without a network."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None, alpha=0.35)
    cache = tmp_path / "models"
    cache.mkdir()
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    with h5py.File(cache / fname, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    import keras.src.applications.mobilenet_v2 as mv2

    real_get_file = mv2.file_utils.get_file
    monkeypatch.setattr(
        mv2.file_utils, "get_file", lambda fname, origin, **kw: real_get_file(fname, origin, cache_dir=str(tmp_path), **kw)
    )
    m = create_model("mobilenet_v2", input_size=96, alpha=0.35, weights="imagenet", num_classes=3)
    loaded = m.get_layer("base").get_weights()
    assert all((a == b).all() for a, b in zip(base.get_weights(), loaded))


def test_keras_file_errors(tmp_path):
    from edgecnn.host.models.io import load_keras_model

    bad = tmp_path / "bad.keras"
    bad.write_text("<html>not found</html>")
    with pytest.raises(ModelError, match="is not a Keras model"):
        load_keras_model(bad)
    import keras

    inp = keras.Input((8, 8, 1))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(out))).save(tmp_path / "lam.keras")
    with pytest.raises(ModelError, match="Lambda layer or other code that Keras safe mode refuses"):
        load_keras_model(tmp_path / "lam.keras")
    assert load_keras_model(tmp_path / "lam.keras", trust=True).output_shape == (None, 2)
