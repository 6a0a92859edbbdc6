"""The one preprocessing: values, colour order, dtype handling, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgecnn.errors import ConfigError, DataError
from edgecnn.preprocess import PreprocessSpec, preprocess, preprocess_batch


def test_unit_and_symmetric_values():
    img = np.array([[[0, 128, 255]]], dtype=np.uint8)  # 1x1 RGB
    unit = preprocess(img, PreprocessSpec.unit(1), source_order="RGB")
    np.testing.assert_allclose(unit[0, 0], [0.0, 128 / 255, 1.0], rtol=1e-6)
    sym = preprocess(img, PreprocessSpec.symmetric(1), source_order="RGB")
    np.testing.assert_allclose(sym[0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-6)
    assert PreprocessSpec.symmetric(8).value_range() == pytest.approx((-1.0, 1.0))


def test_bgr_source_is_swapped_to_rgb_model():
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV order
    x = preprocess(bgr, PreprocessSpec.unit(4), source_order="BGR")
    assert x[..., 2].min() == 1.0 and x[..., 0].max() == 0.0  # model (RGB) sees blue in channel 2
    x2 = preprocess(bgr[..., ::-1].copy(), PreprocessSpec.unit(4), source_order="RGB")
    np.testing.assert_array_equal(x, x2)


def test_gray_rgba_and_uint16_are_converted():
    spec = PreprocessSpec.unit(8, channels=3)
    gray = np.full((8, 8), 200, np.uint8)
    assert preprocess(gray, spec).shape == (8, 8, 3)
    rgba = np.full((8, 8, 4), 50, np.uint8)
    np.testing.assert_allclose(preprocess(rgba, spec, source_order="RGB"), 50 / 255, rtol=1e-6)
    u16 = np.full((8, 8, 3), 65535, np.uint16)
    np.testing.assert_allclose(preprocess(u16, spec), 1.0)
    g1 = preprocess(np.full((8, 8, 3), 255, np.uint8), PreprocessSpec.unit(8, channels=1))
    assert g1.shape == (8, 8, 1) and g1.max() == pytest.approx(1.0)


def test_refuses_float_and_bad_shapes():
    spec = PreprocessSpec.unit(8)
    with pytest.raises(DataError, match="uint8 or uint16 image; received dtype float64"):
        preprocess(np.zeros((8, 8, 3)), spec)
    with pytest.raises(DataError, match=r"received shape \(8, 8, 5\)"):
        preprocess(np.zeros((8, 8, 5), np.uint8), spec)
    with pytest.raises(DataError, match="no images"):
        preprocess_batch([], spec)


def test_spec_validation_and_roundtrip(tmp_path):
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        PreprocessSpec(height=8, width=8, channels=2)
    with pytest.raises(ConfigError, match="std must not contain 0"):
        PreprocessSpec(height=8, width=8, std=(0.0,))
    spec = PreprocessSpec(
        height=10, width=12, channels=3, color_order="BGR", scale=1.0, mean=(1.0, 2.0, 3.0), std=(2.0,), resize="letterbox"
    )
    spec.save(tmp_path / "p.json")
    assert PreprocessSpec.load(tmp_path / "p.json") == spec


@pytest.mark.parametrize("mode", ["stretch", "center_crop", "letterbox"])
def test_resize_modes_give_model_size(mode):
    spec = PreprocessSpec(height=16, width=24, resize=mode)
    assert preprocess(np.zeros((30, 50, 3), np.uint8), spec).shape == (16, 24, 3)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        dtype=st.sampled_from([np.uint8, np.uint16]),
        shape=st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
    ),
    st.sampled_from([1, 3]),
)
def test_property_any_image_converts_to_model_shape_and_range(img, channels):
    spec = PreprocessSpec.unit(16, channels=channels)
    x = preprocess(img, spec, source_order="RGB")
    assert x.shape == (16, 16, channels) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(2, 30), st.integers(2, 30), st.just(3))))
def test_property_training_and_runtime_tensors_agree(img):
    """Training decodes RGB (skimage/sklearn), the runtime gets BGR from OpenCV: same tensor."""
    spec = PreprocessSpec.symmetric(12)
    train_side = preprocess(img, spec, source_order="RGB")
    runtime_side = preprocess(np.ascontiguousarray(img[..., ::-1]), spec, source_order="BGR")
    assert np.abs(train_side - runtime_side).max() <= spec.scale + 1e-6  # within 1 LSB


@pytest.mark.parametrize("dtype,scale,zp", [("int8", 0.0078125, -1), ("uint8", 0.02, 128), ("int8", 0.004, 5)])
def test_quantize_table_gives_the_float_path_exactly(dtype, scale, zp):
    """Lookup from resized pixels == preprocess() then the runtime's quantisation, per-channel mean/std included."""
    from edgecnn.preprocess import quantize_table, resize_uint8
    from edgecnn.runtime.base import BackendBase, TensorSpec

    spec = PreprocessSpec(height=24, width=20, channels=3, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    backend = BackendBase(input=TensorSpec("x", (1, 24, 20, 3), dtype, scale, zp))
    table = quantize_table(spec, scale, zp, dtype)
    assert table.shape == (3, 256) and table.dtype == np.dtype(dtype)
    rng = np.random.default_rng(1)
    for shape, order in (((48, 64, 3), "BGR"), ((31, 17, 4), "RGB"), ((40, 40), "BGR")):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        pixels = resize_uint8(img, spec, source_order=order)
        looked_up = np.stack([table[c][pixels[:, :, c]] for c in range(3)], axis=-1)
        expected = backend.quantize_input(preprocess(img, spec, source_order=order))
        np.testing.assert_array_equal(looked_up, expected)
