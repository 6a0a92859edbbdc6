"""Inference precisions (issue #28): openvino/bf16 (and fp16's half arithmetic) asked for inside the IR, used only
where the CPU computes in it, and gated like every precision."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.devices import cpu_features, host_facts
from edgecnn.formats import Precision
from edgecnn.host.convert.parity import GateThresholds, check_parity

HAS = cpu_features(host_facts(query_gpu=False).flags)


@pytest.mark.slow
def test_openvino_bf16_is_gated_recorded_and_run_in_bfloat16_where_the_cpu_has_it(lenet_run, tmp_path):
    import openvino as ov

    from edgecnn.host.convert.api import convert
    from edgecnn.runtime import Classifier

    out = tmp_path / "out"
    summary = convert(lenet_run, "host", out=out, precisions=["openvino/bf16", "openvino/fp16", "openvino/fp32"])
    rows = {r.precision: r for r in summary.rows}
    assert all(r.status == "ok" for r in rows.values()), [(r.precision, r.error) for r in rows.values()]
    bf16 = rows[Precision.BF16].parity
    assert bf16.agreement >= 0.995 and bf16.max_abs_dp <= 0.05
    manifest = json.loads((out / "openvino-bf16" / "edgecnn.json").read_text())
    assert manifest["precision"] == "bf16" and manifest["extra"]["inference_precision"] == "bf16"
    model = ov.Core().read_model(str(out / "openvino-bf16" / "model.xml"))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "bf16"
    used = {}
    for p in ("bf16", "fp16", "fp32"):
        with Classifier(out / f"openvino-{p}", runtime="openvino", allow_fallback=False) as clf:
            used[p] = clf.describe()["inference_precision"]
    assert used["fp32"] == "f32"  # never lowered, whatever the CPU offers
    assert used["bf16"] == ("bf16" if HAS["bf16"] else "f32")
    assert used["fp16"] == ("f16" if HAS["fp16 arithmetic"] else "f32")  # not bf16 on a CPU with BF16 but no FP16
    if HAS["bf16"]:  # bfloat16 arithmetic really ran: the probabilities moved, within the gate
        assert 1e-5 < bf16.max_abs_dp and rows[Precision.FP32].parity.max_abs_dp <= 1e-4


def test_the_bf16_gate_checks_agreement_and_max_dp():
    class Fake:
        def __init__(self, probs):
            self.p = probs
            self.backend = self

        def probabilities(self, x):
            return self.p

        def run(self, x):
            return self.p[:1]

        def describe(self):
            return {"runtime": "openvino", "version": "x", "providers": ["CPU"]}

    class Eval:
        x = np.zeros((4, 1))
        y = np.array([0, 1, 0, 1])
        source = "test"

    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    ok = check_parity(Fake(ref + [0.03, -0.03]), ref, Eval, Precision.BF16, ["a", "b"], GateThresholds(), timing_runs=1)
    assert ok.passed, ok.reasons
    moved = check_parity(Fake(ref + [-0.06, 0.06]), ref, Eval, Precision.BF16, ["a", "b"], GateThresholds(), timing_runs=1)
    assert not moved.passed and any(r.startswith("max|dp| 6.00e-02 > 5e-02") for r in moved.reasons), moved.reasons
    flipped = check_parity(Fake(ref[:, ::-1]), ref, Eval, Precision.BF16, ["a", "b"], GateThresholds(), timing_runs=1)
    assert any("top-1 agreement 0.00% < 99.5%" in r for r in flipped.reasons), flipped.reasons
