"""Device side: sign and verify artifact folders with OpenSSF model-signing (elliptic-curve keys, no network).

Each artifact folder is signed as one unit: every file in it (model, weights, manifest, self-check samples) is
hashed into the signature, which is stored beside them as ``edgecnn.sig`` (left out of its own hash). A conversion
folder is signed as a set too: its own ``edgecnn.sig`` covers every file below it (summaries, every artifact and
their signatures), so a file added, removed or changed anywhere in it fails, and a link, device or FIFO anywhere in
it is refused by name before any hashing. A verifier with the public key refuses an unsigned folder, a signature
made with another key, any changed byte and any file added or removed. The manifest's own digest only catches edits
and corruption; the signature also stops someone who means harm, as long as the private key stays off the devices.

Keys are read before anything else happens: ``--trust-key`` must be one PEM public key (a private key, an SSH key,
a certificate, an empty file or a folder is refused with one line saying what it is), and only the key itself,
re-encoded from its parsed bytes, is ever copied to a board.

    edgecnn sign out/lenet5-rpi4 --key signing-key.pem           # every artifact of a conversion
    edgecnn verify out/lenet5-rpi4 --trust-key signing-key.pub    # on the device
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
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


_MAX_KEY_BYTES = 64 * 1024
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
_KEY_HINT = (
    "make a key pair with: openssl ecparam -name prime256v1 -genkey -noout -out key.pem && "
    "openssl ec -in key.pem -pubout -out key.pub"
)


def _read_key_file(path: str | Path, what: str) -> tuple[Path, bytes]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a key file")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    if path.stat().st_size > _MAX_KEY_BYTES:
        raise ConfigError(f"{what} {path} is {path.stat().st_size} bytes: too large to be a key file")
    data = path.read_bytes()
    if not data.strip():
        raise ConfigError(f"{what} {path} is empty", hint=_KEY_HINT)
    return path, data


def _key(path: str | Path, what: str) -> Path:
    """A PEM key file (private, for signing): exists and looks like PEM."""
    path, data = _read_key_file(path, what)
    if b"-----BEGIN" not in data[:64]:
        raise ConfigError(f"{what} {path} is not a PEM key file", hint=_KEY_HINT)
    return path


def public_key_pem(path: str | Path, what: str = "public key (--trust-key)") -> bytes:
    """The one PEM public key in ``path``, re-encoded from its parsed bytes (nothing else of the file survives).

    Refused, with one line naming what the file is: a folder, an empty file, a private key (PEM, PKCS#8 or
    OpenSSH), an SSH public key, a certificate, several blocks, or anything that does not parse as a public key."""
    path, data = _read_key_file(path, what)
    blocks = _PEM.findall(data)
    labels = [label.decode() for label, _ in blocks]
    if any("PRIVATE" in label for label in labels) or b"PRIVATE KEY-----" in data:
        raise ConfigError(
            f"{what} {path} is a PRIVATE key: give the public half; nothing was read or copied",
            hint="openssl ec -in PRIVATE.pem -pubout -out public.pem (and keep the private key on the build host)",
        )
    if re.match(rb"\s*(ssh-(ed25519|rsa|dss)|ecdsa-sha2-|sk-)", data):
        raise ConfigError(f"{what} {path} is an SSH public key, not a signing key (PEM PUBLIC KEY)", hint=_KEY_HINT)
    if any("CERTIFICATE" in label for label in labels):
        raise ConfigError(f"{what} {path} is a certificate, not a public key", hint="openssl x509 -in CERT.pem -pubkey -noout > public.pem")
    if labels != ["PUBLIC KEY"]:
        found = ", ".join(labels) if labels else "no PEM block"
        raise ConfigError(f"{what} {path} is not one PEM public key (found: {found})", hint=_KEY_HINT)
    try:
        der = base64.b64decode(b"".join(blocks[0][1].split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} {path}: its PEM block is not valid base64") from None
    _check_der_key(der, path, what)
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + b"\n-----END PUBLIC KEY-----\n"


def _check_der_key(der: bytes, path: Path, what: str) -> None:
    """With cryptography installed (it comes with the sign extra): the key parses and is an elliptic-curve key."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key
    except ImportError:
        if not der.startswith(b"0"):  # a DER SEQUENCE
            raise ConfigError(f"{what} {path}: its PEM block holds no public key") from None
        return
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {path}: not a public key ({first_line(exc, 120)})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(
            f"{what} {path} is a {type(key).__name__.removeprefix('_').replace('PublicKey', '')} key; signatures here use "
            "elliptic-curve keys (P-256, P-384, P-521)",
            hint=_KEY_HINT,
        )


def check_private_key(path: str | Path) -> Path:
    """The --sign-key file exists and is a PEM key (checked before any work)."""
    return _key(path, "private key (--sign-key)")


def trust_key_from(option: str | None) -> Path | None:
    """``--trust-key``, else the EDGECNN_TRUST_KEY environment variable, else None (no signature required); the
    file must hold one public key (checked here, before any work)."""
    value = option or os.environ.get(TRUST_KEY_ENV)
    if not value:
        return None
    where = "public key (--trust-key)" if option else f"public key (${TRUST_KEY_ENV})"
    public_key_pem(value, where)
    return Path(value)


def set_files(folder: str | Path) -> list[Path]:
    """Every file below ``folder`` (sorted), after refusing, by name, anything that is not a plain file or folder: a
    link could carry any file of the machine along (scp follows links), and a device or FIFO is no part of a model."""
    from edgecnn.errors import ArtifactError

    folder = Path(folder)
    odd: list[str] = []
    files: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                files.append(path)
            elif not stat.S_ISDIR(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "a device, FIFO or socket"
                odd.append(f"{path.relative_to(folder).as_posix()} ({kind})")
    if odd:
        raise ArtifactError(
            f"{folder} holds what no artifact may: {', '.join(odd[:5])}{' ...' if len(odd) > 5 else ''}",
            hint="remove them: an artifact folder holds plain files only",
        )
    return sorted(files)


def is_set_folder(path: str | Path) -> bool:
    """A conversion output folder (its artifacts in sub-folders), not one artifact folder."""
    from edgecnn.manifest import MANIFEST_NAME

    path = Path(path)
    return path.is_dir() and not (path / MANIFEST_NAME).is_file()


def sign_folder(path: str | Path, key: str | Path, *, password: str | None = None) -> list[Path]:
    """Sign every artifact of ``path`` and, for a conversion folder, the folder as a set; the signatures' paths."""
    from edgecnn.manifest import artifact_dirs

    set_files(path)
    sigs = [sign_artifact(d, key, password=password) for d in artifact_dirs(path)]
    if is_set_folder(path):
        sigs.append(sign_artifact(path, key, password=password))
    return sigs


def verify_folder(path: str | Path, public_key: str | Path) -> None:
    """``path`` (an artifact or a conversion folder) signed by ``public_key`` over exactly what it holds: the set's
    signature (a conversion folder), then each artifact's own."""
    from edgecnn.manifest import artifact_dirs

    set_files(path)
    if is_set_folder(path):
        if not (Path(path) / SIGNATURE_NAME).is_file():
            from edgecnn.errors import ArtifactError

            raise ArtifactError(
                f"{path} is not signed as a set (no {SIGNATURE_NAME} beside its artifacts): files outside the artifacts "
                "would go unchecked",
                hint="sign the whole folder on the build host: edgecnn sign FOLDER --key PRIVATE.pem",
            )
        verify_signature(path, public_key)
    for d in artifact_dirs(path):
        verify_signature(d, public_key)


def sign_artifact(directory: str | Path, key: str | Path, *, password: str | None = None) -> Path:
    """Sign one artifact folder with the elliptic-curve private key ``key`` (PEM); returns the signature's path."""
    hashing, signing, _ = _model_signing()
    directory = Path(directory)
    key = _key(key, "private key (--key)")
    set_files(directory)
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
    public_key_pem(public_key)
    set_files(directory)
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
