"""The CI-sized subset of tools/hostile_inputs.py: one or two cases of every class, against the same real components
(loopback HTTP/RTSP servers, generated files, real signals). The whole set: python tools/hostile_inputs.py."""

from __future__ import annotations

import pytest
from tools_hostile import CASES, run_cases

pytestmark = pytest.mark.slow


def test_every_class_has_ci_cases_and_every_case_says_what_it_expects():
    classes = {c.klass for c in CASES}
    assert classes == {"streams", "sinks", "numbers", "recipes", "files", "runtime", "signals", "boards"}
    assert classes == {c.klass for c in CASES if c.ci}
    assert len(CASES) >= 90 and all(c.expect for c in CASES)


def test_ci_subset_is_clear(lenet_artifacts, lenet_run, tmp_path):
    lines: list[str] = []
    results = run_cases([c for c in CASES if c.ci], artifact=lenet_artifacts, run=lenet_run, work=tmp_path, say=lines.append)
    assert all(r.ok for r in results), "\n".join(lines)


def test_a_case_looks_only_at_its_own_temp_files_not_another_programs(lenet_artifacts, lenet_run, tmp_path):
    """Issue #31: the check for files left in the temp folder read the machine-wide folder, so an edgecnn file another
    program left there failed a case. Each case's command now gets a temp folder of its own (TMPDIR): a foreign
    export in the machine's folder is neither blamed nor touched, and the case still passes."""
    import os
    import tempfile
    from pathlib import Path

    foreign = Path(tempfile.gettempdir()) / f"edgecnn-export-{os.getpid()}-foreign"  # a live pid: no clean-up removes it
    foreign.mkdir(exist_ok=True)
    try:
        cases = [c for c in CASES if c.name in ("SIGTERM during convert", "classify --threads 0")]
        lines: list[str] = []
        results = run_cases(cases, artifact=lenet_artifacts, run=lenet_run, work=tmp_path, say=lines.append)
        assert len(results) == 2 and all(r.ok for r in results), "\n".join(lines)
        assert foreign.is_dir()
    finally:
        foreign.rmdir()
