"""strategy: multi_worker — two local worker processes on loopback train one model together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_worker_multiworker_mirrored_strategy(tmp_path):
    recipe = tmp_path / "mw.yaml"
    recipe.write_text(
        "name: mw\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\nstrategy: multi_worker\n"
        "training: {epochs: 2, batch_size: 32, early_stopping: null}\n"
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
        assert p.returncode == 0, err[-2000:]
    import keras

    a = keras.saving.load_model(tmp_path / "w0" / "model.keras", compile=False)
    b = keras.saving.load_model(tmp_path / "w1" / "model.keras", compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    m = json.loads((tmp_path / "w0" / "metrics.json").read_text())
    assert m["accuracy"] > 0.5 and "trained lenet5" in outs[0][0]
