"""Signing artifact folders (OpenSSF model-signing, elliptic-curve keys made here) and refusing what does not verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecnn.cli import main
from edgecnn.errors import ArtifactError, ConfigError
from edgecnn.signing import SIGNATURE_NAME, sign_artifact, verify_signature

pytest.importorskip("model_signing.verifying", reason='needs the sign extra: pip install "edgecnn[sign]"')


def make_key_pair(folder: Path, name: str, curve=None) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(curve or ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture()
def keys(tmp_path):
    return make_key_pair(tmp_path, "ours"), make_key_pair(tmp_path, "theirs")


def test_sign_then_verify_classify_and_profile_with_the_trusted_key(artifact_copy, keys, tmp_path, capsys):
    (private, public), _ = keys
    assert main(["sign", str(artifact_copy), "--key", str(private)]) == 0
    assert capsys.readouterr().out.count("signed: ") == 6
    assert all((d / SIGNATURE_NAME).is_file() for d in artifact_copy.iterdir() if d.is_dir())
    assert main(["verify", str(artifact_copy), "--trust-key", str(public)]) == 0
    assert capsys.readouterr().out.count("signature verified") == 6
    args = ["--source", "synthetic:?frames=3&size=32x32", "--max-frames", "3", "--trust-key", str(public)]
    assert main(["classify", str(artifact_copy / "tflite-int8"), *args]) == 0
    assert "classified 3" in capsys.readouterr().err
    assert (
        main(
            [
                "profile",
                str(artifact_copy / "onnx-fp32"),
                "--runs",
                "5",
                "--min-seconds",
                "0",
                "--json",
                "--trust-key",
                str(public),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["self_check"]["passed"] is True


def test_unsigned_other_key_and_every_changed_byte_are_refused(artifact_copy, keys, capsys):
    (private, public), (_, other_public) = keys
    art = artifact_copy / "tflite-int8"
    with pytest.raises(ArtifactError, match=r"is not signed \(no edgecnn.sig\) and a trusted key was given"):
        verify_signature(art, public)
    sign_artifact(art, private)
    verify_signature(art, public)
    with pytest.raises(ArtifactError, match="the signature was not made with the key .*theirs.pub"):
        verify_signature(art, other_public)
    for name in ("model.tflite", "edgecnn.json", "selfcheck.npz"):
        backup = (art / name).read_bytes()
        data = bytearray(backup)
        data[len(data) // 2] ^= 0x01
        (art / name).write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match=f"changed after signing: {name}"):
            verify_signature(art, public)
        (art / name).write_bytes(backup)
    (art / "extra.txt").write_text("planted")
    with pytest.raises(ArtifactError, match="added after signing: extra.txt"):
        verify_signature(art, public)
    (art / "extra.txt").unlink()
    (art / SIGNATURE_NAME).write_text("{not a bundle")
    with pytest.raises(ArtifactError, match="signature file edgecnn.sig is unreadable"):
        verify_signature(art, public)
    # through the CLI: one error line each, exit 1
    assert (
        main(["classify", str(artifact_copy / "onnx-fp32"), "--source", "synthetic:?frames=1", "--trust-key", str(public)]) == 1
    )
    assert "error: artifact" in capsys.readouterr().err


def test_the_trust_key_can_come_from_the_environment(artifact_copy, keys, monkeypatch, capsys):
    (private, public), _ = keys
    monkeypatch.setenv("EDGECNN_TRUST_KEY", str(public))
    assert main(["verify", str(artifact_copy / "tflite-fp32")]) == 1
    assert "is not signed" in capsys.readouterr().err
    sign_artifact(artifact_copy / "tflite-fp32", private)
    assert main(["verify", str(artifact_copy / "tflite-fp32")]) == 0


def test_bad_keys_are_clear_errors(artifact_copy, keys, tmp_path, capsys):
    (private, public), _ = keys
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(ConfigError, match="is not a PEM key file"):
        sign_artifact(artifact_copy / "tflite-fp32", tmp_path / "junk.pem")
    with pytest.raises(ConfigError, match="private key \\(--key\\) not found"):
        sign_artifact(artifact_copy / "tflite-fp32", tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="cannot sign with .*ours.pub"):  # a public key where the private one goes
        sign_artifact(artifact_copy / "tflite-fp32", public)
    assert not (artifact_copy / "tflite-fp32" / SIGNATURE_NAME).exists()
    assert main(["verify", str(artifact_copy), "--trust-key", str(tmp_path / "nope.pub")]) == 1
    assert "public key (--trust-key) not found" in capsys.readouterr().err


@pytest.mark.slow
def test_convert_signs_the_set_before_it_appears(lenet_run, keys, tmp_path, capsys):
    (private, public), _ = keys
    out = tmp_path / "signed"
    args = ["convert", str(lenet_run), "--device", "host", "--precision", "tflite/fp32", "--out", str(out), "--quiet"]
    assert main([*args, "--sign-key", str(private)]) == 0
    assert (out / "tflite-fp32" / SIGNATURE_NAME).is_file()
    assert json.loads((out / "summary.json").read_text())["signed"] is True
    assert main(["verify", str(out), "--trust-key", str(public)]) == 0
    # converting another precision of the same model with --force keeps tflite/fp32, and signs the whole set again
    assert main([*args[:4], "--precision", "onnx/fp32", "--out", str(out), "--quiet", "--force", "--sign-key", str(private)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["onnx-fp32", "tflite-fp32"]
    assert main(["verify", str(out), "--trust-key", str(public)]) == 0
    capsys.readouterr()
    shutil.rmtree(out)
    assert main([*args, "--sign-key", str(tmp_path / "missing.pem")]) == 1  # refused before any work
    assert "private key (--sign-key) not found" in capsys.readouterr().err and not out.exists()
