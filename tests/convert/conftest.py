"""Fixtures shared by the convert tests: the outlier model, built once per session (about 30 s on 2 cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def outlier_model(build_once) -> Path:
    """tools/outlier_model.py's model and folders (model.keras, labels.txt, preprocess.json, heldout/, calibration/):
    read-only for the tests (int8 recovery, QAT)."""
    sys.path.insert(0, str(REPO / "tools"))
    from outlier_model import build

    def make(out: Path) -> Path:
        facts = build(out)
        assert facts["max_abs_dp_from_rescaling"] < 1e-5  # the float model is the same function
        assert facts["float_accuracy"] > 0.9
        return out

    return build_once("outliers", make)
