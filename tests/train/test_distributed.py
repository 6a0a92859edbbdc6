"""strategy: multi_worker — two local worker processes on loopback train one model together (custom loop, since
Keras 3's Model.fit cannot run MultiWorkerMirroredStrategy: keras-team/keras#20585); strategy: mirrored trains."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from edgecnn.cli import main

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_worker_multiworker_mirrored_strategy(tmp_path):
    recipe = tmp_path / "mw.yaml"
    recipe.write_text(
        "name: mw\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\nstrategy: multi_worker\n"
        "training: {epochs: 4, batch_size: 32, early_stopping: {patience: 2}}\n"
    )
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for i in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}),
            CUDA_VISIBLE_DEVICES="-1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "edgecnn", "train", str(recipe), "--out", str(tmp_path / f"w{i}"), "--quiet"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    import keras

    a = keras.saving.load_model(tmp_path / "w0" / "model.keras", compile=False)
    b = keras.saving.load_model(tmp_path / "w1" / "model.keras", compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    m0 = json.loads((tmp_path / "w0" / "metrics.json").read_text())
    m1 = json.loads((tmp_path / "w1" / "metrics.json").read_text())
    assert m0["accuracy"] == m1["accuracy"] and m0["accuracy"] > 0.8
    assert "trained lenet5" in outs[0][0]


def test_mirrored_strategy_trains(tmp_path):
    recipe = tmp_path / "m.yaml"
    recipe.write_text(
        "name: m\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\nstrategy: mirrored\n"
        "training: {epochs: 3, early_stopping: null}\n"
    )
    assert main(["train", str(recipe), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["accuracy"] > 0.8
