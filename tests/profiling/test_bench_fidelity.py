"""tools/bench_fidelity.py's bracketed rounds: a round counts only if the machine kept its speed through it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench_fidelity  # noqa: E402


def _sides(ours: list[float], refs: list[float], reported: list[float] | None = None):
    ours_it, refs_it, rep_it = iter(ours), iter(refs), iter(reported or [])

    def measure_ours() -> dict:
        return {"p50": next(ours_it), "pinning": {"threads": 2}, "runtime_reported_p50": next(rep_it, None)}

    def measure_ref() -> tuple[float, str, dict]:
        return next(refs_it), "tool", {"num_threads": 2}

    return measure_ours, measure_ref


def test_even_round_brackets_the_reference_with_two_edgecnn_runs():
    r = bench_fidelity._bracketed(0, *_sides([1.00, 1.04], [2.0], reported=[0.9, 1.1]), steady=0.05)
    assert r["order"] == "edgecnn, reference, edgecnn" and r["steady"] is True
    assert r["edgecnn_ms"] == pytest.approx(1.02) and r["ratio"] == pytest.approx(0.51)
    assert r["bracket_spread"] == pytest.approx(0.04) and r["runtime_reported_ratio"] == pytest.approx(0.5)


def test_odd_round_brackets_edgecnn_and_a_speed_change_makes_it_unsteady():
    r = bench_fidelity._bracketed(1, *_sides([3.4], [3.4, 5.0], reported=[3.0]), steady=0.05)
    assert r["order"] == "reference, edgecnn, reference" and r["steady"] is False and r["outer_ms"] == [3.4, 5.0]
    assert r["reference_ms"] == pytest.approx(4.2) and r["bracket_spread"] == pytest.approx(5.0 / 3.4 - 1)
    assert r["edgecnn_ms"] == 3.4 and r["ratio"] == pytest.approx(3.4 / 4.2)  # the one edgecnn run over the pair's mean
    assert r["runtime_reported_ratio"] == pytest.approx(3.0 / 4.2)
    # an even round where only one of the two edgecnn runs reports its own timing has no such ratio
    r = bench_fidelity._bracketed(0, *_sides([1.0, 1.0], [2.0], reported=[0.9]), steady=0.05)
    assert r["runtime_reported_ratio"] is None and r["ratio"] == pytest.approx(0.5)


def test_rounds_go_on_until_enough_are_steady_and_stop_at_three_times_as_many():
    # edgecnn at 1.0 ms throughout; the reference at 1.0 but for a slow spell (1.5) that spoils the second round
    measure_ours, measure_ref = _sides([1.0] * 5, [1.0, 1.5, 1.0, 1.0])
    side = iter([{"bare_interpreter_ms": 0.9}, {"bare_interpreter_ms": 0.8}, {"bare_interpreter_ms": 0.7}])
    tried = bench_fidelity.bracketed_rounds(measure_ours, measure_ref, 2, 0.05, side=lambda: next(side))
    assert [r["steady"] for r in tried] == [True, False, True]  # rounds: E R E, R E R (1.0 vs 1.5), E R E
    assert [r["bare_interpreter_ms"] for r in tried] == [0.9, 0.8, 0.7]
    # a machine that never holds still: 3 x rounds tried, none steady
    measure_ours, measure_ref = _sides([1.0, 2.0] * 20, [1.0, 2.0] * 20)
    tried = bench_fidelity.bracketed_rounds(measure_ours, measure_ref, 2, 0.05)
    assert len(tried) == 6 and not any(r["steady"] for r in tried)


def _round(ratio: float, steady: bool, order: int = 0, reported: float | None = None, **extra) -> dict:
    return {
        "order": bench_fidelity.ORDERS[order], "edgecnn_ms": ratio, "reference_ms": 1.0, "ratio": ratio,
        "runtime_reported_ratio": reported, "outer_ms": [1.0, 1.0], "bracket_spread": 0.0 if steady else 0.5,
        "steady": steady, "_pinning": {"threads": 2}, "_tool": "tool", "_ref_pinning": {}, **extra,
    }  # fmt: skip


def test_summary_takes_the_median_of_the_steady_rounds_only_and_says_so():
    tried = [_round(1.0, True, 0, 0.9), _round(1.45, False, 1), _round(1.02, True, 1, 0.95), _round(0.99, True, 0, 1.0)]
    row = bench_fidelity.summarize(tried, rounds=3)
    assert row["ratio"] == 1.0 and row["ratio_over"] == "steady rounds" and row["complete"] is True
    assert row["steady_rounds"] == 3 and row["rounds_tried"] == 4
    assert row["steady_by_order"] == {bench_fidelity.ORDERS[0]: 2, bench_fidelity.ORDERS[1]: 1}
    assert row["runtime_reported_ratio"] == 0.95  # over the steady rounds, which all report it
    assert all(not k.startswith("_") for r in row["rounds"] for k in r) and len(row["rounds"]) == 4
    assert "bare_interpreter_p50_ms" not in row


def test_summary_of_rounds_none_of_which_was_steady_uses_all_and_flags_it():
    tried = [_round(1.3, False, bare_interpreter_ms=1.3), _round(0.8, False, 1, bare_interpreter_ms=0.8)]
    row = bench_fidelity.summarize(tried, rounds=2)
    assert row["ratio"] == pytest.approx(1.05) and row["ratio_over"] == "all rounds (none was steady)"
    assert row["complete"] is False and row["steady_rounds"] == 0 and "runtime_reported_ratio" not in row
    assert row["vs_bare_interpreter"] == 1.0 and row["interpreter_vs_compiled_model"] == pytest.approx(1.05)
