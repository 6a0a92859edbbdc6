"""Training from recipes: LeNet-5 on digits, run directory contents, bad input."""

from __future__ import annotations

import json

import pytest

from edgecnn.cli import main
from edgecnn.errors import ConfigError, UnknownNameError
from edgecnn.host.train.recipe import load_recipe


def test_lenet5_digits_reaches_97_percent(lenet_run):
    m = json.loads((lenet_run / "metrics.json").read_text())
    assert m["split"] == "test" and m["n"] == 270
    assert m["accuracy"] >= 0.97, m["accuracy"]
    assert set(m["per_class"]) == {str(i) for i in range(10)}
    assert len(m["confusion_matrix"]) == 10 and sum(map(sum, m["confusion_matrix"])) == 270
    for f in (
        "model.keras",
        "labels.txt",
        "preprocess.json",
        "recipe.resolved.yaml",
        "history.csv",
        "learning_curves.png",
        "confusion_matrix.png",
    ):
        assert (lenet_run / f).is_file(), f
    assert (lenet_run / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert json.loads((lenet_run / "preprocess.json").read_text())["height"] == 32
    assert not list(lenet_run.parent.glob(".*partial"))


def _recipe(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'training.epohcs'.*Did you mean 'epochs'"):
        load_recipe(_recipe(tmp_path, "name: x\ndata: bundled:digits\nmodel: {name: lenet5}\ntraining: {epohcs: 3}\n"))
    with pytest.raises(ConfigError, match="'training.batch_size' must be int; received 'big'"):
        load_recipe(_recipe(tmp_path, "name: x\ndata: bundled:digits\nmodel: {name: lenet5}\ntraining: {batch_size: big}\n"))
    with pytest.raises(UnknownNameError, match="Did you mean 'lenet5'"):
        load_recipe(_recipe(tmp_path, "name: x\ndata: bundled:digits\nmodel: {name: lenet6}\n"))
    with pytest.raises(ConfigError, match="optimizer' must be one of adam, sgd"):
        load_recipe(_recipe(tmp_path, "name: x\ndata: bundled:digits\nmodel: {name: lenet5}\ntraining: {optimizer: rmsprop}\n"))


def test_cli_train_bad_inputs(tmp_path, capsys, lenet_run):
    tiny = _recipe(
        tmp_path, "name: tiny\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\ntraining: {epochs: 1}\n"
    )
    assert main(["train", str(tiny), "--out", str(lenet_run)]) == 1
    assert "output folder already exists" in capsys.readouterr().err
    assert main(["train", str(tiny), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "data folder not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    wrong = _recipe(
        tmp_path,
        f"name: w\ndata: bundled:digits\nmodel: {{name: lenet5, input_size: 32, channels: 1}}\n"
        f"transfer: {{base: {tmp_path / 'missing.keras'}}}\n",
    )
    assert main(["train", str(wrong), "--out", str(tmp_path / "w")]) == 1
    assert "model file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_transfer_from_previous_run(tmp_path, lenet_run):
    """Stage 1 (frozen base, new head) then stage 2 (fine-tune) from an edgecnn run, offline."""
    from edgecnn.host.train.trainer import train

    r = _recipe(
        tmp_path,
        f"""name: t
data: bundled:digits
classes: ['5', '6', '7', '8', '9']
model: {{name: lenet5, input_size: 32, channels: 1}}
transfer:
  base: {lenet_run / "model.keras"}
  head_epochs: 3
  fine_tune: {{layers: 2, learning_rate: 0.0001, epochs: 2}}
""",
    )
    out = train(load_recipe(r), tmp_path / "run", quiet=True)
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["5", "6", "7", "8", "9"] and m["accuracy"] > 0.9
    import csv

    stages = {row["stage"] for row in csv.DictReader(open(out / "history.csv"))}
    assert stages == {"head", "fine_tune"}
