"""edgecnn models / inspect through main(argv)."""

from __future__ import annotations

import json

from edgecnn.cli import main


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("lenet5", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "alexnet", "vgg16", "resnet50", "inception_v3"):
        assert name in out
    assert "61,706" in out and "3,538,984" in out
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["squeezenet1_1"]["macs"] == 349151936 and rows["lenet5"]["min_input"] == 16


def test_inspect_lenet5(capsys):
    assert main(["inspect", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "total parameters: 61,706" in out and "28x28x6" in out and "48,120" in out and "largest activation: c1" in out
    assert main(["inspect", "lenet5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 61706 and [ly["params"] for ly in data["layers"]][-1] == 850


def test_inspect_keras_file_and_errors(tmp_path, capsys):
    from edgecnn.host.models import create_model

    create_model("lenet5", num_classes=4).save(tmp_path / "mine.keras")
    assert main(["inspect", str(tmp_path / "mine.keras"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 61706 - 850 + 84 * 4 + 4
    assert main(["inspect", "lenet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'lenet'") and "Did you mean 'lenet5'" in err
    assert main(["inspect", "lenet5", "--input-size", "8"]) == 1
    assert "needs an input of at least 16x16; received 8x8" in capsys.readouterr().err
    (tmp_path / "x.keras").write_bytes(b"garbage")
    assert main(["inspect", str(tmp_path / "x.keras")]) == 1
    assert "is not a Keras model" in capsys.readouterr().err


def test_tables_fit_the_terminal_and_stay_whole_in_a_pipe(monkeypatch, capsys):
    for verb, dropped in (("devices", "description"), ("models", "description")):
        for columns in (100, 80):
            monkeypatch.setenv("COLUMNS", str(columns))
            assert main([verb]) == 0
            lines = capsys.readouterr().out.splitlines()
            assert max(len(line) for line in lines) <= columns, (verb, columns)
            assert f"left out to fit {columns} columns: {dropped}" in " ".join(lines)
        monkeypatch.delenv("COLUMNS")  # a pipe: every column, no row folded
        assert main([verb]) == 0
        out = capsys.readouterr().out
        assert "left out" not in out and "description" in out
        assert ("Raspberry Pi 4" if verb == "devices" else "Inception") in out
