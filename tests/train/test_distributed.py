"""strategy: multi_worker is refused with the upstream reason (Keras 3 fit + MultiWorkerMirroredStrategy is broken,
keras-team/keras#20585); mirrored trains."""

from __future__ import annotations

import json

import pytest

from edgecnn.cli import main


def test_multi_worker_is_refused_clearly(tmp_path, capsys):
    recipe = tmp_path / "mw.yaml"
    recipe.write_text(
        "name: mw\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\nstrategy: multi_worker\n"
    )
    assert main(["train", str(recipe), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "strategy: multi_worker is not supported with Keras 3's Model.fit (keras-team/keras#20585)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_mirrored_strategy_trains(tmp_path, capsys):
    recipe = tmp_path / "m.yaml"
    recipe.write_text(
        "name: m\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\nstrategy: mirrored\n"
        "training: {epochs: 3, early_stopping: null}\n"
    )
    assert main(["train", str(recipe), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["accuracy"] > 0.8
