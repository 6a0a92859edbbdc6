"""Signing artifact folders (OpenSSF model-signing, elliptic-curve keys made here) and refusing what does not verify."""

from __future__ import annotations

import json
import os
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
    assert capsys.readouterr().out.count("signed: ") == 7  # 6 artifacts and the set
    assert all((d / SIGNATURE_NAME).is_file() for d in [artifact_copy, *artifact_copy.iterdir()] if d.is_dir())
    assert main(["verify", str(artifact_copy), "--trust-key", str(public)]) == 0
    assert capsys.readouterr().out.count("signature verified") == 7
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


def test_a_conversion_folder_is_signed_as_a_set_every_file_path_and_type(artifact_copy, keys, tmp_path, capsys):
    (private, public), _ = keys
    assert main(["sign", str(artifact_copy), "--key", str(private)]) == 0
    capsys.readouterr()
    changes = {
        "a file beside the artifacts": (lambda: (artifact_copy / "extra.txt").write_text("x"), "added after signing: extra.txt"),
        "a file removed": (lambda: (artifact_copy / "summary.md").unlink(), "removed after signing: summary.md"),
        "a link": (lambda: (artifact_copy / "keys").symlink_to(Path.home()), "keys (a symbolic link)"),
        "a FIFO": (lambda: os.mkfifo(artifact_copy / "tflite-int8" / "pipe"), "tflite-int8/pipe (a device, FIFO or socket)"),
    }
    for what, (change, expected) in changes.items():
        saved = tmp_path / "saved"
        shutil.copytree(artifact_copy, saved, symlinks=True)
        change()
        assert main(["verify", str(artifact_copy), "--trust-key", str(public)]) == 1, what
        err = capsys.readouterr().err
        assert expected in err and err.count("error: ") == 1, (what, err)
        shutil.rmtree(artifact_copy)
        shutil.move(saved, artifact_copy)
    assert main(["verify", str(artifact_copy), "--trust-key", str(public)]) == 0
    assert "the set: 29 file(s), none added, removed or linked, signature verified" in capsys.readouterr().out
    # a set signed artifact by artifact only (an older edgecnn): the files beside them would go unchecked
    (artifact_copy / SIGNATURE_NAME).unlink()
    assert main(["verify", str(artifact_copy), "--trust-key", str(public)]) == 1
    assert "is not signed as a set" in capsys.readouterr().err


def test_trust_keys_are_parsed_before_use_and_only_a_public_key_is_accepted(artifact_copy, keys, tmp_path, capsys):
    from edgecnn.signing import public_key_pem

    (private, public), _ = keys
    pem = public_key_pem(public)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n") and pem.strip().endswith(b"-----END PUBLIC KEY-----")
    padded = tmp_path / "padded.pub"
    padded.write_bytes(b"comment line\n" + public.read_bytes() + b"trailing junk\n")
    assert public_key_pem(padded) == pem  # only the key survives: no other byte of the file travels
    two = tmp_path / "two.pub"
    two.write_bytes(public.read_bytes() * 2)
    rsa = tmp_path / "rsa.pub"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    rsa.write_bytes(
        rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    openssh = tmp_path / "id_ed25519"
    openssh.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    cases = {
        private: "is a PRIVATE key",
        openssh: "is a PRIVATE key",
        two: "is not one PEM public key (found: PUBLIC KEY, PUBLIC KEY)",
        rsa: "is a RSA key; signatures here use elliptic-curve keys",
        tmp_path: "is a folder, not a key file",
    }
    for key, expected in cases.items():
        assert main(["verify", str(artifact_copy), "--trust-key", str(key)]) == 1
        err = capsys.readouterr().err
        assert expected in err and err.count("error: ") == 1, (key, err)


def test_verify_refuses_a_folder_that_is_both_a_run_and_artifacts_and_the_environment_key_holds_for_runs(
    artifact_copy, lenet_run, keys, tmp_path, monkeypatch, capsys
):
    (_, public), _ = keys
    (artifact_copy / "model.keras").write_bytes((lenet_run / "model.keras").read_bytes())
    assert main(["verify", str(artifact_copy)]) == 1
    assert "holds both a training run" in capsys.readouterr().err
    run = tmp_path / "run"
    shutil.copytree(lenet_run, run)
    monkeypatch.setenv("EDGECNN_TRUST_KEY", str(public))
    assert main(["verify", str(run)]) == 1
    assert "is a training run, which is never signed, and $EDGECNN_TRUST_KEY requires a signature" in capsys.readouterr().err
