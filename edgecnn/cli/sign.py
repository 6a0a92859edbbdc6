"""Device side: edgecnn sign: sign artifact folders with an elliptic-curve private key (OpenSSF model-signing)."""

from __future__ import annotations

HELP = "sign an artifact folder (or every artifact of a conversion output folder) with a private key"


def add_arguments(p) -> None:
    p.add_argument("artifact", help="artifact folder or conversion output folder")
    p.add_argument("--key", required=True, metavar="PRIVATE.pem", help="elliptic-curve private key (P-256/384/521, PEM)")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding the key's password, if encrypted")


def run(args) -> int:
    import os

    from edgecnn.errors import ConfigError
    from edgecnn.runtime.select import load_artifact_set
    from edgecnn.signing import sign_artifact

    password = None
    if args.password_env:
        if args.password_env not in os.environ:
            raise ConfigError(f"--password-env {args.password_env}: no such environment variable")
        password = os.environ[args.password_env]
    for m in load_artifact_set(args.artifact):  # only what verifies is signed
        sig = sign_artifact(m.directory, args.key, password=password)
        print(f"signed: {m.directory} ({m.format}/{m.precision}) -> {sig.name}")
    return 0
