"""`python -m build` makes a wheel and an sdist that carry everything edgecnn reads at run time (device profiles,
recipes, the self-check artifact `board install` runs on a board), with the one version of edgecnn/__init__.py; the
wheel runs from where it is installed; and the wheel `board install` rebuilds from such an install holds the same
files (a host that installed edgecnn from its wheel, not a checkout)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edgecnn import __version__

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0 and (
        "No module named build" in proc.stderr or "Could not find a version" in proc.stdout + proc.stderr
    ):
        pytest.skip(f"python -m build cannot run here: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.network
def test_build_makes_a_wheel_and_an_sdist_with_the_data_and_one_version(dist, tmp_path):
    wheel = dist / f"edgecnn-{__version__}-py3-none-any.whl"
    sdist = dist / f"edgecnn-{__version__}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    names = set(zipfile.ZipFile(wheel).namelist())
    devices = sorted(p.name for p in (REPO / "devices").glob("*.yaml"))
    assert devices and all(f"edgecnn/_resources/devices/{n}" in names for n in devices)
    assert "edgecnn/_resources/recipes/lenet5-digits.yaml" in names
    for kind, model in (("tflite-fp32", "model.tflite"), ("onnx-fp32", "model.onnx"), ("openvino-fp32", "model.bin")):
        for part in (model, "edgecnn.json", "selfcheck.npz"):
            assert f"edgecnn/_resources/assets/selfcheck/lenet5-digits/{kind}/{part}" in names
    assert not [n for n in names if n.startswith(("tests/", "tools/")) or n.endswith(".pyc")]
    metadata = zipfile.ZipFile(wheel).read(f"edgecnn-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata and "Provides-Extra: litert" in metadata
    with tarfile.open(sdist) as tar:
        members = set(tar.getnames())
    root = f"edgecnn-{__version__}"
    assert {
        f"{root}/pyproject.toml",
        f"{root}/devices/rpi4.yaml",
        f"{root}/assets/selfcheck/lenet5-digits/tflite-fp32/model.tflite",
    } <= members

    # installed (here without its dependencies, which this environment has): it runs from there, reads its data
    # from there, and says the same version
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    code = (
        "import edgecnn, edgecnn.resources as r, edgecnn.remote.install as i; "
        "print(edgecnn.__file__); print(r.resource_dir('devices')); print(i._selfcheck_artifact())"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    where = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    ).stdout.split()
    assert all(w.startswith(str(target)) for w in where), where
    version = subprocess.run(
        [sys.executable, "-m", "edgecnn", "--version"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert version.stdout.strip() == f"edgecnn {__version__}", version.stderr

    # the wheel board install makes from that install (not a checkout) holds the same files
    rebuild = (
        "import sys, zipfile; from pathlib import Path; from edgecnn.remote.wheelhouse import _wheel_from_install; "
        "w = _wheel_from_install(Path(sys.argv[1])); print(w); "
        "print('\\n'.join(sorted(zipfile.ZipFile(w).namelist())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", rebuild, str(tmp_path / "cache")], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rebuilt, *listing = out.stdout.split()
    assert Path(rebuilt).name == wheel.name and set(listing) == names
