"""Device profiles and host detection (with fixture files, never by pretending in production code)."""

from __future__ import annotations

import pytest

from edgecnn import devices
from edgecnn.errors import ConfigError, UnknownNameError

EXPECTED = {"rpi4", "rpi5", "rpi-aicam", "jetson-nano", "jetson-orin-nano", "intel-cpu", "desktop-gpu", "coral-edgetpu", "host"}


def test_all_profiles_load_with_figures():
    assert set(devices.list_profiles()) == EXPECTED
    for name in EXPECTED:
        p = devices.load_profile(name)
        assert p.cpu.peak_fp32_gflops > 0 and p.memory.bandwidth_gbps > 0 and p.artifacts and p.runtimes
    assert devices.load_profile("desktop-gpu").runtime_chain()[0] == ("onnxruntime", "CUDA")
    assert devices.load_profile("jetson-nano").runtime_chain()[:2] == [("onnxruntime", "TensorRT"), ("onnxruntime", "CUDA")]
    assert devices.load_profile("coral-edgetpu").int8_io == "uint8"
    assert len(devices.load_profile("rpi4").artifacts) == 6


def test_unknown_device_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'rpi4'"):
        devices.load_profile("rpi-4")


def test_bad_profile_yaml_is_refused(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text((devices.profiles_dir() / "rpi4.yaml").read_text().replace("tflite/int8,", "tflite/int4,"))
    with pytest.raises(ConfigError, match="artifact 'tflite/int4' is not format/precision"):
        devices.load_profile(str(p))


def _fake_root(tmp_path, *, model=None, tegra=None, cpuinfo="processor : 0\nmodel name : Test CPU\nflags : avx2 fma\n"):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo)
    if model:
        (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if tegra:
        (tmp_path / "etc/nv_tegra_release").write_text(tegra)
    return tmp_path


@pytest.mark.parametrize(
    "model, tegra, expected",
    [
        ("Raspberry Pi 4 Model B Rev 1.4", None, "rpi4"),
        ("Raspberry Pi 5 Model B Rev 1.0", None, "rpi5"),
        (None, "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref", "jetson-nano"),
        (None, "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic", "jetson-orin-nano"),
        (None, None, "host"),
    ],
)
def test_detection_from_fixture_files(tmp_path, model, tegra, expected):
    root = _fake_root(tmp_path, model=model, tegra=tegra)
    facts = devices.host_facts(root, query_gpu=False)
    name, reason = devices.detect(root, facts=facts)
    assert name == expected
    if model:
        assert model in reason


def test_nvidia_gpu_detection_and_host_completion(tmp_path):
    root = _fake_root(tmp_path)
    facts = devices.host_facts(root, query_gpu=False)
    facts = devices.HostFacts(**{**facts.__dict__, "gpus": ("NVIDIA H100",)})
    assert devices.detect(root, facts=facts)[0] == "desktop-gpu"
    host = devices.complete_host(devices.load_profile("host"), facts)
    assert host.cpu.model == "Test CPU" and host.cpu.cores == 1 and host.cpu.flags == ("avx2", "fma")
    assert host.cpu.peak_fp32_gflops == pytest.approx(1 * facts.clock_ghz * 32, rel=0.01)
    assert host.accelerators[0].name == "NVIDIA H100"


def test_cli_devices(capsys):
    from edgecnn.cli import main

    assert main(["devices", "rpi4", "--json"]) == 0
    assert '"name": "rpi4"' in capsys.readouterr().out
    assert main(["devices", "--detect"]) == 0
    assert main(["devices", "jetson"]) == 1


PI4_CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
        for i in range(4)
    )
    + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)


def test_an_arm_cpu_is_named_by_its_part_number(tmp_path):
    facts = devices.host_facts(_fake_root(tmp_path, cpuinfo=PI4_CPUINFO), query_gpu=False)
    assert facts.cpu_model == "Cortex-A72" and facts.cores == 4 and facts.arch == "aarch64"
    assert set(facts.flags) == {"asimd"}
    unknown = PI4_CPUINFO.replace("0xd08", "0xfff")
    assert devices.host_facts(_fake_root(tmp_path / "u", cpuinfo=unknown), query_gpu=False).cpu_model == "BCM2835"


@pytest.mark.parametrize(
    ("cpuinfo", "dot", "bf16", "fp16", "faster"),
    [
        (PI4_CPUINFO, [], [], [], False),  # Cortex-A72: no dot product
        (PI4_CPUINFO.replace("asimd evtstrm", "asimd asimdhp asimddp i8mm bf16 evtstrm").replace("0xd08", "0xd0b"),
         ["asimddp"], ["bf16"], ["asimdhp"], True),  # a Cortex-A76-class core with the v8.2+ extensions
        ("processor : 0\nmodel name : Old Xeon\nflags : avx avx2 fma\n", [], [], [], False),
        ("processor : 0\nmodel name : EPYC\nflags : avx2 avx512f avx512_vnni avx512_bf16 fma\n", ["avx512_vnni"], ["avx512_bf16"], [], True),
        ("processor : 0\nmodel name : Xeon 4th gen\nflags : avx2 avx512f avx512_vnni avx512_fp16 amx_tile amx_int8 amx_bf16\n",
         ["avx512_vnni", "amx_int8"], ["amx_bf16"], ["avx512_fp16"], True),
    ],
)
def test_the_instruction_sets_that_decide_int8_and_bf16_are_read_from_cpuinfo(tmp_path, cpuinfo, dot, bf16, fp16, faster):
    facts = devices.host_facts(_fake_root(tmp_path, cpuinfo=cpuinfo), query_gpu=False)
    features = devices.cpu_features(facts.flags)
    assert (features["int8 dot product"], features["bf16"], features["fp16 arithmetic"]) == (dot, bf16, fp16)
    outlook = devices.int8_outlook(facts.flags, facts.arch)
    assert outlook.startswith("int8 can beat fp32 here") == faster, outlook
    if not faster:
        assert ("Cortex-A72 has none" in outlook) == (facts.arch == "aarch64") and "cuts the model's size by 4x" in outlook


def test_profiles_and_detect_record_the_cpu_features(capsys):
    import json

    from edgecnn.cli import main
    from edgecnn.profiling.system import cpu_context

    ctx = cpu_context()
    assert set(ctx["features"]) == set(devices.CPU_FEATURES) and ctx["int8_outlook"]
    assert main(["devices", "--detect", "--json"]) == 0
    detected = json.loads(capsys.readouterr().out)
    assert detected["features"] == ctx["features"] and detected["int8_outlook"] == ctx["int8_outlook"]


def test_one_nvidia_smi_query_serves_detection_and_the_profiles_gpu_context(tmp_path, monkeypatch):
    """A stand-in nvidia-smi (no NVIDIA GPU here) that answers as the real one does with --format=csv,noheader,nounits:
    detection reads the names, a profile's system context the whole row; a failing nvidia-smi gives nothing."""
    from edgecnn.profiling.system import gpu_context

    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=name) echo "NVIDIA H200"; echo "NVIDIA RTX 3060";;\n'
        '  *) echo "NVIDIA H200, 580.159.04, 143771, 1980, 1980, 37";; esac\n'
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert devices._nvidia_gpus() == ["NVIDIA H200", "NVIDIA RTX 3060"]
    assert gpu_context() == [
        {"name": "NVIDIA H200", "driver_version": "580.159.04", "memory.total": "143771", "clocks.sm": "1980",
         "clocks.max.sm": "1980", "temperature.gpu": "37"}
    ]  # fmt: skip
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert devices._nvidia_gpus() == [] and gpu_context() == []
