"""Shared fixtures: one trained LeNet-5 run and its converted artifacts per test session."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as edgecnn.host._tfenv sets it for the product
# CPU-only tests: no 'cuInit failed' noise on GPU-less CI; the GPU tests (tests/runtime/test_gpu.py) run their
# children with the caller's own value again, kept here
os.environ.setdefault("EDGECNN_TEST_CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
if os.environ.get("PYTEST_XDIST_WORKER") is not None:
    # pytest-xdist's workers get COLUMNS=80 and LINES=24 (the controller's terminal, or 80 without one): the tables
    # would fold as in an 80-column terminal, unlike the same test in a plain pytest (no terminal: no folding)
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def shared(tmp_path_factory, name: str, build):
    """``build(folder) -> Path`` once per test run, also under pytest-xdist: the first worker to ask builds into a
    common folder while holding a lock, the others wait for it and reuse the result (a LeNet-5 run and its conversion
    would otherwise be made once per worker). The common folder is $EDGECNN_TEST_SHARED where set (tools/test.sh sets
    one for both of its parts, so the serial part reuses what the parallel part built), else the run's common temp
    folder under pytest-xdist; a plain pytest builds into its own temp folder. A build that fails leaves no result: the
    next one tries again."""
    import fcntl
    import json

    if os.environ.get("EDGECNN_TEST_SHARED"):
        common = Path(os.environ["EDGECNN_TEST_SHARED"])
    elif os.environ.get("PYTEST_XDIST_WORKER") is not None:
        common = tmp_path_factory.getbasetemp().parent  # one per run, shared by its workers
    else:
        return build(tmp_path_factory.mktemp(name))
    done = common / f"{name}.json"
    with open(common / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this worker dies
        if not done.is_file() or not Path(json.loads(done.read_text())).exists():
            folder = common / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(json.dumps(str(build(folder))))
        return Path(json.loads(done.read_text()))


@pytest.fixture(scope="session")
def build_once(tmp_path_factory):
    """``build_once(name, build)``: ``shared`` for fixtures in other conftest files."""
    return lambda name, build: shared(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory) -> Path:
    """recipes/lenet5-digits.yaml trained once (about 40 s on 2 cores)."""

    def build(folder: Path) -> Path:
        from edgecnn.host.train.recipe import load_recipe
        from edgecnn.host.train.trainer import train

        return train(load_recipe(REPO / "recipes" / "lenet5-digits.yaml"), folder / "lenet5-digits", quiet=True)

    return shared(tmp_path_factory, "runs", build)


@pytest.fixture(scope="session")
def lenet_artifacts(lenet_run, tmp_path_factory) -> Path:
    """The LeNet-5 run converted for the host profile: 6 artifacts in 3 formats."""

    def build(folder: Path) -> Path:
        from edgecnn.host.convert.api import convert

        summary = convert(lenet_run, "host", out=folder / "lenet5-host")
        assert summary.ok, [(r.format, r.precision, r.status, r.error) for r in summary.rows]
        return folder / "lenet5-host"

    return shared(tmp_path_factory, "artifacts", build)


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory, repo):
    """A fresh venv with only `pip install ".[litert,sign]"`: a board's install (no TensorFlow, no matplotlib)."""

    def build(d: Path) -> Path:
        import subprocess
        import venv

        venv.EnvBuilder(with_pip=True).create(d)
        py = d / "bin" / "python"
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", f"{repo}[litert,sign]"], capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0 and ("Could not find a version" in proc.stderr or "Failed to establish" in proc.stderr):
            pytest.skip(f"package registry unreachable: {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        return d

    return shared(tmp_path_factory, "litert-venv", build)


@pytest.fixture()
def artifact_copy(lenet_artifacts, tmp_path):
    """A private copy of the artifacts that a test may damage."""
    dst = tmp_path / "artifacts"
    shutil.copytree(lenet_artifacts, dst)
    return dst


@pytest.fixture(scope="session")
def digits_test_split():
    from edgecnn.host.data import load_dataset

    ds = load_dataset("bundled:digits")
    return ds.split(validation=0.15, test=0.15, seed=0)[2]


# Processes a test may leave because the interpreter keeps them for its own life (multiprocessing's helpers).
_LONG_LIVED = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")


def _running_children() -> dict[int, str]:
    import psutil

    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            line = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if not any(name in line for name in _LONG_LIVED):
            found[child.pid] = line[:200]
    return found


@pytest.fixture(autouse=True)
def leaves_nothing_running():
    """A test that leaves a child process running fails (after 5 s of grace), and the child is killed: a hung
    probe's fork once outlived the suite by 23 minutes. Idle conversion workers kept for the next conversion
    (``scheduler.POOL``) are not left behind: the pool ends them."""
    import time

    import psutil

    before = set(_running_children())
    yield

    deadline = time.monotonic() + 5.0
    while (left := {p: line for p, line in _running_children().items() if p not in before | _kept_workers()}) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    assert not left, f"the test left {len(left)} process(es) running: {left}"


# One-test files that take a minute: handed out last (xdist's default, most tests first), one of them ended the
# parallel part alone while the other worker idled for 96 s. The demo is CPU; the soak mostly waits, beside it.
START_FIRST = ("test_demo.py", "test_soak.py")


def pytest_collection_modifyitems(config, items):
    """tools/test.sh runs the suite in two parts: the tests marked ``serial`` (their clocks matter) are left out of the
    parallel part (pytest-xdist workers) and are the only ones in the serial part (EDGECNN_TEST_PART=serial). A plain
    ``pytest`` runs everything."""
    serial_part = os.environ.get("EDGECNN_TEST_PART") == "serial"
    parallel_part = os.environ.get("PYTEST_XDIST_WORKER") is not None
    if not (serial_part or parallel_part):
        return
    keep, drop = [], []
    for item in items:
        (keep if (item.get_closest_marker("serial") is not None) == serial_part else drop).append(item)
    if parallel_part:  # the long one-test files first (tools/test.sh hands files out in this order)
        keep.sort(key=lambda item: START_FIRST.index(item.path.name) if item.path.name in START_FIRST else len(START_FIRST))
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _kept_workers() -> set[int]:
    """The idle conversion workers the scheduler keeps for the next conversion (``scheduler.POOL``)."""
    scheduler = sys.modules.get("edgecnn.host.convert.scheduler")
    return scheduler.POOL.pids() if scheduler is not None else set()


_CHARGED: dict[int, float] = {}  # kept conversion worker -> its CPU seconds already charged to a test


def _kept_workers_cpu() -> float:
    """CPU seconds of the conversion workers the scheduler keeps (``POOL``) not yet charged to a test: they are not
    reaped when a test ends, so RUSAGE_CHILDREN would charge their whole life to the test that closes them. A worker
    closed since the last test counts in RUSAGE_CHILDREN already; what was charged of it before comes off."""
    now: dict[int, float] = {}
    for pid in _kept_workers():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            now[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    extra = sum(v - _CHARGED.get(pid, 0.0) for pid, v in now.items())
    extra -= sum(v for pid, v in _CHARGED.items() if pid not in now)
    _CHARGED.clear()
    _CHARGED.update(now)
    return extra


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With EDGECNN_TEST_CPU_LOG=FILE, one JSON line per test: its wall time and the CPU seconds it cost, in this
    process and in the children it waited for (programs, servers, pip, the IMX500 toolchain): where the suite's CPU
    goes on a machine whose cores are all busy (tools/suite_cpu.py sums it up)."""
    log = os.environ.get("EDGECNN_TEST_CPU_LOG")
    if not log:
        yield
        return
    import json
    import resource
    import time

    def cpu(who):
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    start, t0, s0, c0 = time.time(), time.monotonic(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    yield
    rec = {
        "test": item.nodeid,
        "start": round(start, 2),
        "wall": round(time.monotonic() - t0, 2),
        "self": round(cpu(resource.RUSAGE_SELF) - s0, 2),
        "children": round(cpu(resource.RUSAGE_CHILDREN) - c0 + _kept_workers_cpu(), 2),
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "serial" if os.environ.get("EDGECNN_TEST_PART") else "-"),
    }
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")
