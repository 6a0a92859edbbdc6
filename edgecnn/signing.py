"""Device side: sign and verify artifact folders with OpenSSF model-signing (elliptic-curve keys, no network).

Each artifact folder is signed as one unit: every file in it (model, weights, manifest, self-check samples) is
hashed into the signature, which is stored beside them as ``edgecnn.sig`` (left out of its own hash). A verifier
with the public key refuses an unsigned folder, a signature made with another key, any changed byte and any file
added or removed. The manifest's own digest only catches edits and corruption; the signature also stops someone
who means harm, as long as the private key stays off the devices.

    edgecnn sign out/lenet5-rpi4 --key signing-key.pem           # every artifact of a conversion
    edgecnn verify out/lenet5-rpi4 --trust-key signing-key.pub    # on the device
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgecnn.errors import ArtifactError, ConfigError, MissingDependencyError, first_line

SIGNATURE_NAME = "edgecnn.sig"
TRUST_KEY_ENV = "EDGECNN_TRUST_KEY"  # a device's default --trust-key (e.g. set in its systemd unit)


def _model_signing():
    try:
        from model_signing import hashing, signing, verifying
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "model-signing", "sign", purpose="signing and verifying artifacts") from None
    return hashing, signing, verifying


def _key(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    head = path.read_bytes()[:64]
    if b"-----BEGIN" not in head:
        raise ConfigError(
            f"{what} {path} is not a PEM key file",
            hint="make a key pair with: openssl ecparam -name prime256v1 -genkey -noout -out key.pem && "
            "openssl ec -in key.pem -pubout -out key.pub",
        )
    return path


def check_private_key(path: str | Path) -> Path:
    """The --sign-key file exists and is a PEM key (checked before any work)."""
    return _key(path, "private key (--sign-key)")


def trust_key_from(option: str | None) -> Path | None:
    """``--trust-key``, else the EDGECNN_TRUST_KEY environment variable, else None (no signature required)."""
    value = option or os.environ.get(TRUST_KEY_ENV)
    return _key(value, "public key (--trust-key)") if value else None


def sign_artifact(directory: str | Path, key: str | Path, *, password: str | None = None) -> Path:
    """Sign one artifact folder with the elliptic-curve private key ``key`` (PEM); returns the signature's path."""
    hashing, signing, _ = _model_signing()
    directory = Path(directory)
    key = _key(key, "private key (--key)")
    sig = directory / SIGNATURE_NAME
    config = hashing.Config().set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)
    tmp = directory / f".{SIGNATURE_NAME}.tmp"
    try:
        signing.Config().set_hashing_config(config).use_elliptic_key_signer(private_key=key, password=password).sign(
            directory, tmp
        )
    except (ValueError, TypeError) as exc:  # cryptography: not an EC key, wrong password, unsupported curve
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot sign with {key}: {first_line(exc, 200)}",
            hint="use an elliptic-curve private key (P-256, P-384 or P-521) in PEM form",
        ) from None
    os.replace(tmp, sig)
    return sig


def verify_signature(directory: str | Path, public_key: str | Path) -> None:
    """Refuse ``directory`` unless it carries a signature by ``public_key`` over exactly its current files."""
    _, _, verifying = _model_signing()
    directory = Path(directory)
    public_key = _key(public_key, "public key (--trust-key)")
    sig = directory / SIGNATURE_NAME
    if not sig.is_file():
        raise ArtifactError(
            f"artifact {directory} is not signed (no {SIGNATURE_NAME}) and a trusted key was given",
            hint="sign it on the build host: edgecnn sign ARTIFACT --key PRIVATE.pem",
        )
    import json

    try:
        verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(directory, sig)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"artifact {directory}: its signature file {SIGNATURE_NAME} is unreadable ({first_line(exc, 120)})", hint=_HINT
        ) from None
    except ValueError as exc:
        raise ArtifactError(f"artifact {directory}: {_why(str(exc), public_key)}", hint=_HINT) from None
    except Exception as exc:  # noqa: BLE001 - a malformed signature file fails in the JSON/protobuf parsers
        raise ArtifactError(
            f"artifact {directory}: its signature file {SIGNATURE_NAME} is unreadable ({first_line(exc, 120, with_type=True)})",
            hint=_HINT,
        ) from None


_HINT = "copy the artifact again from the build host, or sign it again there with the right key"


def _why(message: str, key: Path) -> str:
    """model-signing's ValueError as one line that names the key or the files."""
    if message.startswith("Key mismatch") or "signature verification failed" in message.lower():
        return f"the signature was not made with the key {key} (another key, or a forged signature)"
    # model-signing puts its list of differences into the message with repr(): quotes may come escaped
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)\\?'", message)
    extra = re.findall(r"Extra files found in model \\?'[^']*\\?': ([^\"'\\\]]+)", message)
    missing = re.findall(r"Missing files in model \\?'[^']*\\?': ([^\"'\\\]]+)", message)
    parts = (
        ([f"changed after signing: {', '.join(changed)}"] if changed else [])
        + ([f"added after signing: {', '.join(extra)}"] if extra else [])
        + ([f"removed after signing: {', '.join(missing)}"] if missing else [])
    )
    return "; ".join(parts) if parts else f"the signature does not verify: {first_line(message, 200)}"
