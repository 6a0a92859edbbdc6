"""Clear errors for transfer set-ups that cannot work."""

from __future__ import annotations

from edgecnn.cli import main
from edgecnn.host.models import create_model


def test_base_with_other_channels_is_refused(tmp_path, capsys):
    create_model("lenet5").save(tmp_path / "gray.keras")  # a 1-channel base
    r = tmp_path / "r.yaml"
    r.write_text(
        f"name: t\ndata: bundled:digits\nmodel: {{name: lenet5, input_size: 32, channels: 3}}\n"
        f"transfer: {{base: {tmp_path / 'gray.keras'}, head_epochs: 1}}\n"
    )
    assert main(["train", str(r), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "takes 1-channel input, but the recipe asks for 3 channels" in err and not (tmp_path / "o").exists()


def test_cached_features_with_augmentation_is_refused(tmp_path, capsys):
    create_model("mobilenet_v2", num_classes=10, input_size=32, channels=1, alpha=0.35).save(tmp_path / "base.keras")
    r = tmp_path / "r.yaml"
    r.write_text(
        f"name: t\ndata: bundled:digits\nmodel: {{name: mobilenet_v2, input_size: 32, channels: 1, options: {{alpha: 0.35}}}}\n"
        f"augmentation: {{flip: horizontal}}\ntransfer: {{base: {tmp_path / 'base.keras'}, head_epochs: 1}}\n"
    )
    assert main(["train", str(r), "--out", str(tmp_path / "o"), "--quiet", "--cache-features"]) == 1
    assert "cache_features needs augmentation switched off" in capsys.readouterr().err
