"""serve.yaml: several sources in one process, each with its own state and health log; flags override the file."""

from __future__ import annotations

import json

from edgecnn.cli import main


def test_two_sources_from_serve_yaml_with_a_flag_on_top(capsys, lenet_tflite, digit_video, tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        f"artifact: {lenet_tflite}\nname: house\nhealth: {tmp_path}/health-{{source}}.jsonl\nhealth_every: 0.5\n"
        "sources:\n"
        f"  - {{name: door, uri: '{digit_video}', debounce: 3}}\n"
        "  - {name: yard, uri: 'synthetic:?fps=10&frames=20', min_confidence: 0.0}\n"
    )
    # --debounce 2 overrides the file's 3 for every source: the two-frame 1 (frames 91-92) now becomes a state
    assert main(["serve", "--config", str(cfg), "--debounce", "2", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    door, yard = report["sources"]["door"], report["sources"]["yard"]
    assert [(c["state"], c["frame"]) for c in door["history"]] == [("3", 2), ("7", 62), ("1", 92), ("7", 94)]
    assert door["ended_by"] == "source" and door["counters"]["classified"] == 120
    assert yard["ended_by"] == "source" and yard["counters"]["classified"] == 20
    for name in ("door", "yard"):
        lines = [json.loads(x) for x in (tmp_path / f"health-{name}.jsonl").read_text().splitlines()]
        assert lines[-1]["ended_by"] == "source" and lines[-1]["classified"] == report["sources"][name]["counters"]["classified"]
    assert "[serve] door: 7 -> 1 (" in captured.err
