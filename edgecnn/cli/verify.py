"""Device side: edgecnn verify: re-check an artifact (manifest digest, hashes, one conversion, signature) or a training run;
``--run`` replays the artifact's self-check through this machine's runtime."""

from __future__ import annotations

HELP = "check an artifact's manifest, file hashes and signature, or a training run's file index; --run: its self-check here"


def add_arguments(p) -> None:
    p.add_argument("artifact", help="artifact folder, conversion output folder (every artifact in it) or training run folder")
    p.add_argument(
        "--run",
        action="store_true",
        help="also run each artifact's stored held-out images through this machine's runtime and compare with the host's outputs",
    )
    p.add_argument(
        "--trust-key",
        metavar="PUBLIC.pem",
        help="refuse any artifact not signed by this public key (default: $EDGECNN_TRUST_KEY if set)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line for each thing checked ({kind, path, text, ...}; kind: set, artifact, run, "
        "self-check, skipped): what the host reads of a board's verify",
    )
    from edgecnn.cli.boards import add_board_arguments

    add_board_arguments(p)


def run(args) -> int:
    from pathlib import Path

    from edgecnn.runtime.select import load_artifact_set
    from edgecnn.signing import is_set_folder, set_files, trust_key_from, verify_folder

    path = Path(args.artifact)
    key = trust_key_from(args.trust_key)  # the option or $EDGECNN_TRUST_KEY, parsed before anything else
    if args.on:
        return _verify_on_board(path, args)
    say = _sayer(args.json)
    if _is_training_run(path):
        return _verify_run(path, args, key, say)
    manifests = load_artifact_set(path)
    if key is not None:
        verify_folder(path, key)
        if is_set_folder(path):
            files = len(set_files(path))
            say("set", path, f"ok: {path} (the set: {files} file(s), none added, removed or linked, signature verified)",
                files=files, signature=True)
    ran = 0
    for m in manifests:
        text = f"ok: {m.directory} ({_describe(m)}{', signature verified' if key is not None else ''})"
        say("artifact", m.directory, text, format=str(m.format), precision=str(m.precision), signature=key is not None)
        if args.run:
            ran += _self_check(m, say)
    if args.run and not ran:
        from edgecnn.errors import RuntimeBackendError

        raise RuntimeBackendError(
            f"no artifact in {path} could run here (no runtime for its formats is installed)",
            hint='install one, e.g. pip install "edgecnn[litert]"',
        )
    return 0


def _sayer(as_json: bool):
    """say(kind, path, text, **facts): the text line, or with --json the record (the text in it)."""
    import json

    def say(kind: str, path, text: str, **facts) -> None:
        print(json.dumps({"kind": kind, "path": str(path), "text": text, **facts}) if as_json else text, flush=True)

    return say


def _verify_on_board(path, args) -> int:
    """The board's own edgecnn verifies the copy it received (and runs the self-check on its runtime with --run);
    each record it answers is shown as it would be there, then its error, if any, is raised here."""
    from edgecnn.cli.boards import board_from
    from edgecnn.remote.run import verify_on
    from edgecnn.signing import trust_key_from

    board = board_from(args)
    verify_on(board, path, run=args.run, trust_key=trust_key_from(args.trust_key),
              on_record=lambda r: print(f"[{board.label}] {r.get('text', '')}"))
    return 0


def _is_training_run(path) -> bool:
    """A training run's folder (its file index or model.keras) or a .keras file. A folder that also holds artifacts
    is refused: which one is meant cannot be guessed, and taking the run would skip the signature policy."""
    from edgecnn.errors import ConfigError
    from edgecnn.manifest import MANIFEST_NAME, RUN_INDEX

    run = (path / RUN_INDEX).is_file() or (path / "model.keras").is_file() or path.suffix == ".keras"
    artifacts = (path / MANIFEST_NAME).is_file() or any(path.glob(f"*/{MANIFEST_NAME}")) if path.is_dir() else False
    if run and artifacts:
        raise ConfigError(
            f"{path} holds both a training run ({RUN_INDEX} or model.keras) and edgecnn artifacts: verify one of them",
            hint="keep conversion output folders apart from training runs (edgecnn convert RUN --out OTHER_FOLDER)",
        )
    return run


def _verify_run(path, args, key, say) -> int:
    """A training run folder: every file against its recorded sha256 (a lone .keras file is refused)."""
    from edgecnn.errors import ConfigError
    from edgecnn.manifest import verify_run
    from edgecnn.signing import TRUST_KEY_ENV

    if path.suffix == ".keras" and path.is_file():
        raise ConfigError(
            f"{path} is a Keras model file: verify checks artifacts (edgecnn convert's output) and training runs",
            hint="verify the run folder it came from, or convert it first",
        )
    if args.run or args.trust_key:
        raise ConfigError(f"{path} is a training run: --run and --trust-key apply to artifacts")
    if key is not None:
        raise ConfigError(
            f"{path} is a training run, which is never signed, and ${TRUST_KEY_ENV} requires a signature",
            hint=f"verify signed artifacts here, or unset {TRUST_KEY_ENV} for this command",
        )
    data = verify_run(path)
    say("run", path, f"ok: {path} (training run, {len(data['files'])} file(s) match their sha256)", files=len(data["files"]))
    return 0


def _describe(m) -> str:
    parity = m.parity or {}
    if not parity:
        status = "no parity record"
    else:
        status = "parity passed" if parity.get("passed") else "parity FAILED (kept with --no-gate)"
    return f"{m.format}/{m.precision}, {len(m.files)} file(s) match their sha256, {len(m.labels)} labels, {status}"


def _self_check(m, say) -> int:
    """One artifact's self-check with its format's runtime here; 0 when that runtime is not installed."""
    from edgecnn.errors import MissingDependencyError
    from edgecnn.formats import runtime_for
    from edgecnn.runtime import Classifier, selfcheck

    runtime = runtime_for(m.format)
    try:
        clf = Classifier(m.directory, runtime=runtime, allow_fallback=False)
    except MissingDependencyError as exc:
        say("skipped", m.directory, f"  skipped the self-check of {m.directory.name}: {exc.message} ({exc.hint})",
            reason=exc.message)
        return 0
    with clf:
        result = selfcheck.run(clf)
    say("self-check", m.directory, f"  {result.line()}", result=result.to_dict())
    if not result.passed:
        from edgecnn.errors import RuntimeBackendError

        raise RuntimeBackendError(
            f"{m.directory}: {result.line()}: this runtime or CPU computes other answers than the host did",
            hint="try another runtime or artifact, and report the runtime version and CPU",
        )
    return 1
