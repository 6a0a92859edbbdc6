"""The host's calls of a board's edgecnn (edgecnn.remote.verbs): argv built in one place and read back by the
board's own parser, answers and errors as JSON (``edgecnn --json-errors``), never parsed from ``error:`` lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgecnn.cli import build_parser, main
from edgecnn.profiling.measure import ProfileOptions
from edgecnn.remote import verbs
from edgecnn.remote.transport import Board, RemoteError

ROOT = Path(__file__).resolve().parents[2]
BOARD = Board(url="ssh://pi@board.local", name="pi")


def test_the_profile_argv_is_read_back_by_the_boards_parser_as_the_same_options():
    opts = ProfileOptions(runs=37, min_seconds=0.5, warmup=3, threads=2, batch=4, input_shape=(1, 32, 32, 1))
    argv = verbs.profile_argv("/cache/ab/tflite-int8", opts, device="rpi4", runtime="litert", self_check=False,
                              trust_key="/cache/k/public.pem")
    args = build_parser(json_errors=True).parse_args(verbs.board_argv("profile", *argv))
    assert args.json_errors and args.verb == "profile" and args.model == "/cache/ab/tflite-int8"
    assert (args.runs, args.min_seconds, args.warmup, args.threads, args.batch) == (37, 0.5, 3, 2, 4)
    assert (args.input_shape, args.device, args.runtime, args.trust_key) == ("1,32,32,1", "rpi4", "litert", "/cache/k/public.pem")
    assert args.skip_self_check and args.json and args.with_samples
    plain = build_parser().parse_args(["profile", *verbs.profile_argv("m", ProfileOptions())])
    assert (plain.runs, plain.min_seconds, plain.warmup, plain.threads, plain.device, plain.skip_self_check) == (
        200, 10.0, 20, None, None, False
    )


def test_the_release_options_are_read_back_by_the_boards_parser():
    options = verbs.release_options(release="0123456789abcdef", grace=2.5, keep=4, wait=False, restart="systemctl restart x",
                                    health=None, check=None, healthz="http://127.0.0.1:8090/healthz", trust_key=None)
    args = build_parser().parse_args(["release", "start", "--to", "/srv/app", "--id", "t1", *options])
    assert (args.release, args.grace, args.keep, args.no_wait, args.restart, args.healthz) == (
        "0123456789abcdef", 2.5, 4, True, "systemctl restart x", "http://127.0.0.1:8090/healthz"
    )
    assert not args.rollback and args.health is None and args.check is None
    back = build_parser().parse_args(["release", "run", "--to", "/a", "--id", "t", *verbs.release_options(rollback=True, grace=0)])
    assert back.rollback and back.release is None and back.grace == 0 and not back.no_wait


def _edgecnn(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_json_errors_turn_every_kind_of_failure_into_one_json_object(tmp_path):
    cases = [
        (("--json-errors", "profile", str(tmp_path / "nothing")), 1, "ConfigError", f"model or artifact not found: {tmp_path / 'nothing'}"),
        (("--json-errors", "profile", "m", "--runs", "0"), 2, "UsageError", "edgecnn profile: argument --runs: must be a whole number"),
        (("--json-errors", "release", "follow", "--to", str(tmp_path), "--id", "bad id"), 1, "ConfigError",
         "release follow: --id must be 1-64 letters"),
    ]
    for argv, code, kind, message in cases:
        proc = _edgecnn(*argv)
        assert proc.returncode == code, proc
        error = json.loads(proc.stderr.strip().splitlines()[-1])["error"]
        assert error["type"] == kind and error["message"].startswith(message) and error["exit"] == code, error
        assert "error:" not in proc.stderr
    plain = _edgecnn("profile", str(tmp_path / "nothing"))
    assert plain.returncode == 1 and plain.stderr.startswith("error: model or artifact not found")  # people still read lines


def test_a_boards_json_error_is_raised_with_its_type_and_hint_and_a_non_edgecnn_failure_is_named():
    stderr = "some library warning\n" + json.dumps(
        {"error": {"type": "ArtifactError", "message": "art: not made with the key \x1b[2J", "hint": "sign it", "exit": 1}}
    )
    err = verbs.error_from(BOARD, "verify", 1, stderr)
    assert isinstance(err, verbs.BoardError) and err.kind == "ArtifactError" and err.exit_code == 1
    assert err.message == "pi: verify: art: not made with the key " and err.hint == "sign it"  # cleaned of the escape
    other = verbs.error_from(BOARD, "profile", 1, "error: \x1b]0;owned\x07boom done\n")
    assert type(other) is RemoteError
    assert other.message == "pi: profile: the board's edgecnn failed (exit 1) without edgecnn's JSON error: error: boom done"
    silent = verbs.error_from(BOARD, "profile", 139, "")
    assert silent.message.endswith("(exit 139) without edgecnn's JSON error and said nothing")


def test_verify_json_records_carry_the_text_a_person_reads(lenet_artifacts, capsys):
    assert main(["verify", str(lenet_artifacts / "tflite-fp32"), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in records] == ["artifact"]
    assert records[0]["format"] == "tflite" and records[0]["text"].startswith(f"ok: {lenet_artifacts / 'tflite-fp32'} (tflite/fp32")
    assert main(["verify", str(lenet_artifacts / "tflite-fp32")]) == 0
    assert capsys.readouterr().out.strip() == records[0]["text"]


def test_no_module_parses_error_lines_or_spells_the_profile_argv_outside_verbs():
    """The two habits this module replaced, looked for in the source: ``error:`` lines read back, and the board's
    profile options spelled out by hand (``"--min-seconds"`` outside the CLI's own definition and verbs.py)."""
    offenders = []
    for path in sorted((ROOT / "edgecnn").rglob("*.py")):
        text = path.read_text()
        if 'startswith("error:")' in text or "removeprefix(\"error: \")" in text or "removeprefix('error: ')" in text:
            offenders.append(f"{path.name}: reads error: lines")
        if '"--min-seconds"' in text and path.name not in ("verbs.py",) and "add_argument(\"--min-seconds\"" not in text:
            offenders.append(f"{path.name}: spells the profile argv")
    assert offenders == []


