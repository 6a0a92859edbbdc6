"""Device side: edgecnn sign: sign artifact folders with an elliptic-curve private key (OpenSSF model-signing)."""

from __future__ import annotations

HELP = "sign an artifact folder, or a conversion output folder as a set (every artifact and every file beside them)"


def add_arguments(p) -> None:
    p.add_argument("artifact", help="artifact folder or conversion output folder")
    p.add_argument("--key", required=True, metavar="PRIVATE.pem", help="elliptic-curve private key (P-256/384/521, PEM)")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding the key's password, if encrypted")


def run(args) -> int:
    import os

    from edgecnn.errors import ConfigError
    from edgecnn.runtime.select import load_artifact_set
    from edgecnn.signing import sign_folder

    password = None
    if args.password_env:
        if args.password_env not in os.environ:
            raise ConfigError(f"--password-env {args.password_env}: no such environment variable")
        password = os.environ[args.password_env]
    from pathlib import Path

    manifests = {m.directory: m for m in load_artifact_set(args.artifact)}  # only what verifies is signed
    for sig in sign_folder(args.artifact, args.key, password=password):
        m = manifests.get(sig.parent)
        what = f"{m.format}/{m.precision}" if m else f"the whole set: {len(manifests)} artifact(s) and every file beside them"
        print(f"signed: {sig.parent} ({what}) -> {Path(sig).name}")
    return 0
