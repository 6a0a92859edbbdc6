"""Deploying safely (issue #25), against real OpenSSH servers on 127.0.0.1: one with rsync, one with only scp over the
SFTP subsystem. The board's edgecnn is the session's TensorFlow-free device venv. The "service" here is a restart
command that writes one health line, so each deploy takes a second or two; tests/remote/test_remote.py restarts a
real classify process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sshd import SSHServer, _free_port  # noqa: E402

from edgecnn.cli import main  # noqa: E402
from edgecnn.remote.journal import lock_is_free  # noqa: E402

pytestmark = pytest.mark.slow

# a restart that "starts the service": one health line from a process started now (what deploy's watch looks for)
HEALTHY = """sh -c 'printf "{{\\"time\\": %s, \\"t_s\\": 0}}\\n" "$(date +%s.%N)" >> {health}'"""


@pytest.fixture(scope="module", params=["rsync", "scp"])
def server(request, tmp_path_factory):
    s = SSHServer(tmp_path_factory.mktemp(f"sshd-{request.param}"), rsync=request.param == "rsync")
    s.kind = request.param
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rsync_server(tmp_path_factory):
    s = SSHServer(tmp_path_factory.mktemp("sshd-one"))
    yield s
    s.stop()


def options(server, device_venv, tmp_path) -> list[str]:
    return [
        "--on", server.url, "--ssh-config", str(server.config), "--remote-edgecnn", str(device_venv / "bin" / "edgecnn"),
        "--remote-cache", str(tmp_path / "board-cache"),
    ]


def watch(to: Path, grace: float = 10) -> list[str]:
    health = to / "health.jsonl"
    return ["--restart", HEALTHY.format(health=health), "--health", str(health), "--grace", str(grace)]


def release_copy(lenet_artifacts: Path, folder: Path, tag: str) -> Path:
    """A copy of the LeNet set made a different release by one byte of its summary."""
    shutil.copytree(lenet_artifacts, folder)
    (folder / "summary.md").write_text((folder / "summary.md").read_text() + f"\n<!-- {tag} -->\n")
    return folder


def links(to: Path) -> tuple[str | None, str | None]:
    def one(name: str) -> str | None:
        p = to / name
        if not p.is_symlink():
            return None
        assert p.resolve().is_dir(), f"{name} -> {os.readlink(p)} dangles"
        return os.readlink(p)

    return one("current"), one("previous")


def test_one_connection_per_deploy_with_rsync_and_with_only_scp(server, lenet_artifacts, device_venv, tmp_path, capsys):
    to = tmp_path / "board" / "app"
    before = server.connections()
    args = ["deploy", str(lenet_artifacts), "--to", str(to), *watch(to), "--json", *options(server, device_venv, tmp_path)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert server.connections() - before == 1  # 12 before the ControlMaster (measured on the old code, both boards)
    assert report["outcome"] == "deployed" and report["copied"] is True and report["previous"] is None
    assert links(to) == (f"releases/{report['release']}", None)
    copied = to / "current" / "tflite-int8" / "model.tflite"
    assert copied.read_bytes() == (lenet_artifacts / "tflite-int8" / "model.tflite").read_bytes()
    journal = [json.loads(line) for line in (to / ".deploy" / "journal.jsonl").read_text().splitlines()]
    assert [r["step"] for r in journal if r["id"] == journal[-1]["id"]][-4:] == ["switched", "restarted", "healthy", "end"]
    # a second deploy of the same set copies nothing and switches nothing
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["outcome"] == "unchanged" and again["copied"] is False and again["switched"] is False


def test_keys_links_and_unlisted_files_are_refused_before_any_connection(
    rsync_server, lenet_artifacts, device_venv, tmp_path, capsys
):
    from test_signing import make_key_pair

    private, public = make_key_pair(tmp_path, "signer")
    art = tmp_path / "art"
    shutil.copytree(lenet_artifacts, art)
    assert main(["sign", str(art), "--key", str(private)]) == 0
    assert "the whole set" in capsys.readouterr().out
    to = tmp_path / "board" / "app"
    on = options(rsync_server, device_venv, tmp_path)
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    ssh_pub, empty = tmp_path / "id.pub", tmp_path / "empty.pub"
    ssh_pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA user@host\n")
    empty.write_text("")
    cases = [
        (private, "is a PRIVATE key: give the public half; nothing was read or copied"),
        (cert, "is a certificate, not a public key"),
        (ssh_pub, "is an SSH public key, not a signing key"),
        (empty, "is empty"),
        (tmp_path, "is a folder, not a key file"),
    ]
    before = rsync_server.connections()
    for key, expected in cases:
        assert main(["deploy", str(art), "--to", str(to), "--trust-key", str(key), *on]) == 1
        err = capsys.readouterr().err
        assert expected in err and err.count("error: ") == 1, err
    # a link anywhere in the set (scp would follow it and carry the host's files), and a file the signature lacks
    (art / "ssh").symlink_to(Path.home() / ".ssh")
    assert main(["deploy", str(art), "--to", str(to), "--trust-key", str(public), *on]) == 1
    assert "holds what no artifact may: ssh (a symbolic link)" in capsys.readouterr().err
    (art / "ssh").unlink()
    (art / "notes.txt").write_text("not signed")
    assert main(["deploy", str(art), "--to", str(to), "--trust-key", str(public), *on]) == 1
    assert "deploy refused before any copy" in (err := capsys.readouterr().err) and "added after signing: notes.txt" in err, err
    assert main(["verify", str(art), "--trust-key", str(public)]) == 1
    assert "added after signing: notes.txt" in capsys.readouterr().err
    assert rsync_server.connections() == before and not to.exists()  # nothing reached the board
    # the signed set as it was: deployed, and only the public key, re-encoded, is on the board
    (art / "notes.txt").unlink()
    assert main(["deploy", str(art), "--to", str(to), "--trust-key", str(public), *watch(to), "--json", *on]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "deployed"
    keys = list((tmp_path / "board-cache").glob("*/trust-key/public.pem"))
    assert len(keys) == 1 and b"PRIVATE" not in keys[0].read_bytes() and keys[0].read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    journal = (to / ".deploy" / "journal.jsonl").read_text()
    assert '"signature":true' in journal


def test_urls_that_reach_ssh_option_parser_or_hold_a_password_are_refused(lenet_artifacts, capsys):
    art = str(lenet_artifacts / "tflite-int8")
    cases = {
        "ssh://-oProxyCommand=touch%20pwned@host": "is not a user name",
        "ssh://pi@-oProxyCommand=x": "is not a host name or address",
        "ssh://pi:hunter2@host": "a password in the URL is refused",
        "ssh://pi@ho$t": "is not a host name or address",
    }
    for url, expected in cases.items():
        assert main(["profile", art, "--on", url]) == 1
        err = capsys.readouterr().err
        assert expected in err and "hunter2" not in err and err.count("error: ") == 1, err
    assert not Path("pwned").exists()


def test_a_board_answer_with_terminal_escapes_reaches_the_terminal_clean(rsync_server, lenet_artifacts, tmp_path, capsys):
    from edgecnn import __version__

    fake = tmp_path / "evil-edgecnn"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && {{ echo "edgecnn {__version__}"; exit 0; }}\n'
        # set the clipboard (OSC 52), the window title, clear the screen, ring the bell
        r"""printf 'error: \033]52;c;ZXZpbA==\007boom\033]0;owned\007\033[2J\a done\n' >&2; exit 1""" + "\n"
    )
    fake.chmod(0o755)
    on = ["--on", rsync_server.url, "--ssh-config", str(rsync_server.config), "--remote-edgecnn", str(fake),
          "--remote-cache", str(tmp_path / "cache")]
    assert main(["profile", str(lenet_artifacts / "tflite-int8"), *on]) == 1
    err = capsys.readouterr().err
    assert "boom" in err and "done" in err
    assert not any(c in err for c in "\x1b\x07\x9b"), repr(err)


def test_two_deploys_at_once_one_waits_and_no_wait_refuses(rsync_server, lenet_artifacts, device_venv, tmp_path, capsys):
    import fcntl

    to = tmp_path / "board" / "app"
    on = options(rsync_server, device_venv, tmp_path)
    a, b = (release_copy(lenet_artifacts, tmp_path / name, name) for name in ("a", "b"))
    # two operators at once: two processes. The first one's restart holds its lock until the other one is seen
    # waiting for it (at most 60 s), however late a loaded machine lets the second one arrive
    health, journal = to / "health.jsonl", to / ".deploy" / "journal.jsonl"
    met = f"""for i in $(seq 600); do grep -qs '"step":"waiting"' {journal} && break; sleep 0.1; done"""
    slow = ["--restart", f"{met}; {HEALTHY.format(health=health)}", "--health", str(health), "--grace", "10"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "edgecnn", "deploy", str(art), "--to", str(to), *slow, "--keep", "1", *on],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for art in (a, b)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert any("waiting for the board's lock: transaction" in err for _, err in results), results
    current, previous = links(to)
    names = {r.name for r in (to / "releases").iterdir()}
    assert {current, previous} == {f"releases/{n}" for n in names} and len(names) == 2  # --keep 1 spares previous
    steps = [json.loads(line)["step"] for line in (to / ".deploy" / "journal.jsonl").read_text().splitlines()]
    assert steps.count("locked") == 2 and steps.count("end") == 2 and "waiting" in steps
    # a deploy under way holds the lock: --no-wait refuses with one line, and the links stay
    fd = os.open(to / ".deploy" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"id": "other", "pid": os.getpid(), "since": time.time()}).encode(), 0)
        assert main(["deploy", str(lenet_artifacts), "--to", str(to), "--no-wait", *on]) == 1
        err = capsys.readouterr().err
        assert "another deploy to" in err and "is under way (transaction other" in err and "not waiting" in err, err
    finally:
        os.close(fd)
    assert links(to) == (current, previous)


def test_prune_keeps_what_deploy_did_not_make_and_rollback_checks_its_target(
    rsync_server, lenet_artifacts, device_venv, tmp_path, capsys
):
    to = tmp_path / "board" / "app"
    (to / "releases" / "my other tool").mkdir(parents=True)
    (to / "releases" / "0123456789abcdef.part-deadbeef").mkdir()
    stale = to / "releases" / "fedcba9876543210.part-0badf00d"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    on = options(rsync_server, device_venv, tmp_path)
    arts = [release_copy(lenet_artifacts, tmp_path / f"r{i}", f"r{i}") for i in range(3)]
    for art in arts:
        assert main(["deploy", str(art), "--to", str(to), *watch(to), "--keep", "1", *on]) == 0
    names = sorted(p.name for p in (to / "releases").iterdir())
    assert "my other tool" in names and "0123456789abcdef.part-deadbeef" in names  # not deploy's, or not stale
    assert stale.name not in names
    ours = [n for n in names if len(n) == 16]
    assert len(ours) == 2  # current and previous; the oldest went
    current, previous = links(to)
    capsys.readouterr()
    # --rollback verifies its target, then switches both links
    assert main(["deploy", "--rollback", "--to", str(to), *on]) == 0
    assert links(to) == (previous, current)
    # the release previous points at, deleted by hand: --rollback refuses, current stays
    capsys.readouterr()
    shutil.rmtree(to / current)
    assert main(["deploy", "--rollback", "--to", str(to), *on]) == 1
    err = capsys.readouterr().err
    assert f"previous points at {current}, which no longer exists" in err and err.count("error: ") == 1, err
    assert os.readlink(to / "current") == previous


def test_the_board_finishes_a_deploy_whose_connection_drops_during_the_health_watch(
    lenet_artifacts, device_venv, tmp_path, capsys
):
    server = SSHServer(tmp_path / "sshd")
    try:
        to = tmp_path / "board" / "app"
        on = options(server, device_venv, tmp_path)
        first = release_copy(lenet_artifacts, tmp_path / "first", "first")
        assert main(["deploy", str(first), "--to", str(to), *watch(to), *on]) == 0
        capsys.readouterr()
        health = to / "health.jsonl"
        slow = f"sleep 1.5; {HEALTHY.format(health=health)}"  # the connection is cut while this runs
        journal = to / ".deploy" / "journal.jsonl"

        def cut() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and '"step":"switched"' not in journal.read_text().split('"step":"end"')[-1]:
                time.sleep(0.02)
            server.kill_sessions()

        t = threading.Thread(target=cut)
        t.start()
        second = release_copy(lenet_artifacts, tmp_path / "second", "second")
        code = main(["deploy", str(second), "--to", str(to), "--restart", slow, "--health", str(health), "--grace", "10",
                     "--json", *on])
        t.join()
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "lost the connection" in captured.err and "the board carries on by itself" in captured.err
        report = json.loads(captured.out)
        assert report["outcome"] == "deployed" and links(to)[0] == f"releases/{report['release']}"
    finally:
        server.stop()


def test_a_board_transaction_killed_after_the_switch_is_rolled_back_by_the_next_one_to_look(
    rsync_server, lenet_artifacts, device_venv, tmp_path, capsys
):
    to = tmp_path / "board" / "app"
    on = options(rsync_server, device_venv, tmp_path)
    first = release_copy(lenet_artifacts, tmp_path / "first", "first")
    assert main(["deploy", str(first), "--to", str(to), *watch(to), *on]) == 0
    before = links(to)
    capsys.readouterr()
    journal = to / ".deploy" / "journal.jsonl"
    killed: dict[str, int] = {}

    def kill_after_switch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recs = [json.loads(line) for line in journal.read_text().splitlines()]
            last = [r for r in recs if r["id"] == recs[-1]["id"]]
            if last[-1]["step"] == "switched" and last[-1]["id"] != recs[0]["id"]:
                os.kill(last[-1]["pid"], signal.SIGKILL)  # power gone in the middle of the restart
                killed["pid"] = last[-1]["pid"]
                return
            time.sleep(0.01)

    t = threading.Thread(target=kill_after_switch)
    t.start()
    second = release_copy(lenet_artifacts, tmp_path / "second", "second")
    code = main(["deploy", str(second), "--to", str(to), "--restart", "sleep 3", "--grace", "1", *on])
    t.join()
    err = capsys.readouterr().err
    assert killed and code == 1, err
    assert "the deploy was interrupted" in err and f"rolled back to {before[0]}" in err, err
    assert links(to)[0] == before[0] and links(to)[1] is None


def test_kill_trials_host_killed_at_each_moment_of_a_deploy_leave_one_release_live(
    rsync_server, lenet_artifacts, device_venv, tmp_path
):
    """The fast version of tools/deploy_kill_trials.py (which kills at random moments, many times): the deploy
    command SIGKILLed the instant it reaches each moment that matters (copying; the board's transaction started; the
    links switched; the service restarted), found by watching the board's folder and journal, not by sleeping."""
    to = tmp_path / "board" / "app"
    journal = to / ".deploy" / "journal.jsonl"
    arts = [release_copy(lenet_artifacts, tmp_path / f"r{i}", f"r{i}") for i in range(2)]
    base = [sys.executable, "-m", "edgecnn", "deploy", "--to", str(to), *watch(to),
            *options(rsync_server, device_venv, tmp_path)]
    assert subprocess.run([*base, str(arts[0])], capture_output=True, timeout=120).returncode == 0

    def steps_after(seen: int) -> list[str]:
        return [json.loads(line)["step"] for line in journal.read_text().splitlines()[seen:]]

    moments = {
        "copying": lambda seen: any(to.glob("releases/*.part-*")) or bool(steps_after(seen)),
        "started": lambda seen: "started" in steps_after(seen),
        "switched": lambda seen: "switched" in steps_after(seen),
        "restarted": lambda seen: "restarted" in steps_after(seen),
    }
    releases = {f"releases/{p.name}" for p in (to / "releases").iterdir()}
    try:
        for i, (moment, reached) in enumerate(moments.items()):
            seen = len(journal.read_text().splitlines())
            proc = subprocess.Popen([*base, str(arts[(i + 1) % 2])], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 60
            while not reached(seen) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            killed = proc.poll() is None
            os.killpg(proc.pid, signal.SIGKILL) if killed else None
            proc.wait()
            assert killed or moment == "copying", f"the deploy ended before it reached {moment!r}"
            assert _settled(to), f"killed at {moment!r}: the board's own transaction did not end within 60 s"
            releases |= {f"releases/{p.name}" for p in (to / "releases").iterdir()}
            current, previous = links(to)
            assert current in releases and previous in releases | {None} and current != previous, (moment, links(to))
            records = [json.loads(line) for line in journal.read_text().splitlines()]
            locked = {r["id"] for r in records if r["step"] == "locked"}
            assert locked <= {r["id"] for r in records if r["step"] == "end"}, f"killed at {moment!r}: a transaction never ended"
        # and the board still deploys and rolls back as ever
        live, _ = links(to)
        third = release_copy(lenet_artifacts, tmp_path / "r2", "r2")
        assert subprocess.run([*base, str(third)], capture_output=True, timeout=120).returncode == 0
        rollback = [*base[:4], "--rollback", *base[4:6], *options(rsync_server, device_venv, tmp_path)]
        assert subprocess.run(rollback, capture_output=True, timeout=120).returncode == 0
        assert links(to)[0] == live
    finally:
        rsync_server.kill_sessions()  # the SSH masters of the killed commands (they would idle out in 120 s)


def _settled(to: Path, timeout: float = 60) -> bool:
    """No `edgecnn release` process for ``to`` runs any more (a killed deploy's `release start` may still be starting
    its transaction, which then runs on without the host) and none holds the lock."""
    import psutil

    def running() -> bool:
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmd = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and "release" in cmd and str(to) in cmd:
                return True
        return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running() and lock_is_free(to):
            return True
        time.sleep(0.1)
    return False


def test_a_closed_port_is_one_line(lenet_artifacts, capsys):
    assert main(["deploy", str(lenet_artifacts), "--to", "/tmp/x", "--on", f"ssh://root@127.0.0.1:{_free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "connect: connection refused" in err and err.count("error: ") == 1


def test_tilde_paths_are_the_board_users_home_in_every_step(rsync_server, lenet_artifacts, device_venv, capsys):
    import secrets

    name = f"edgecnn-test-{secrets.token_hex(4)}"
    home = Path.home() / name  # the board's user is this machine's user
    on = ["--on", rsync_server.url, "--ssh-config", str(rsync_server.config), "--remote-edgecnn",
          str(device_venv / "bin" / "edgecnn"), "--remote-cache", f"~/{name}/cache"]
    try:
        assert main(["deploy", str(lenet_artifacts), "--to", f"~/{name}/app", "--grace", "0", "--json", *on]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["to"] == f"{home}/app" and (home / "app" / "current" / "tflite-int8" / "model.tflite").is_file()
        assert not Path("~").exists() and not list(Path.cwd().glob("~*"))  # no folder literally named '~'
        assert main(["profile", str(lenet_artifacts / "tflite-int8"), "--runs", "5", "--min-seconds", "0", "--json", *on]) == 0
        assert json.loads(capsys.readouterr().out)["measured_on"]["remote_path"].startswith(f"{home}/cache/")
    finally:
        shutil.rmtree(home, ignore_errors=True)


SERVE = """#!/bin/sh
# the service: one `edgecnn serve` on TO/current/tflite-int8 with its /healthz on PORT, restarted by replacing it
TO="$1"; PORT="$2"
[ -f "$TO/serve.pid" ] && kill "$(cat "$TO/serve.pid")" 2>/dev/null && sleep 0.5
nohup {edgecnn} serve "$TO/current/tflite-int8" --source 'synthetic:?fps=10&size=32x32' --http 127.0.0.1:$PORT \\
    > "$TO/serve.log" 2>&1 < /dev/null &
echo $! > "$TO/serve.pid"
"""


def test_deploy_service_judges_the_real_service_by_its_healthz(rsync_server, lenet_artifacts, lenet_run, device_venv, tmp_path, capsys):
    from edgecnn.host.convert.api import convert

    to = tmp_path / "board" / "app"
    to.mkdir(parents=True)
    port = _free_port()
    service = tmp_path / "serve.sh"
    service.write_text(SERVE.format(edgecnn=Path(sys.executable).parent / "edgecnn"))  # serve needs the serve extra
    service.chmod(0o755)
    on = options(rsync_server, device_venv, tmp_path)
    healthz = f"http://127.0.0.1:{port}/healthz"
    args = ["--service", "edgecnn-digits", "--restart", f"{service} {to} {port}", "--healthz", healthz, "--grace", "30"]
    assert main(["deploy", str(lenet_artifacts), "--to", str(to), "--service", "edgecnn-digits", *on]) == 1
    assert "say how the board judges it: --healthz URL" in capsys.readouterr().err
    try:
        assert main(["deploy", str(lenet_artifacts), "--to", str(to), *args, "--json", *on]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["outcome"] == "deployed"
        # a set without the int8 artifact the service runs: verified fine, but serve cannot start on it
        fp32_only = tmp_path / "fp32-only"
        convert(lenet_run, "host", out=fp32_only, precisions=["tflite/fp32"])
        assert main(["deploy", str(fp32_only), "--to", str(to), *args[:-1], "10", *on]) == 1
        err = capsys.readouterr().err
        assert f"{healthz} did not answer" in err and f"rolled back to releases/{first['release']}" in err, err
        assert links(to)[0] == f"releases/{first['release']}"
        import urllib.request

        deadline = time.monotonic() + 30  # the previous release's service is serving again
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(healthz, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("the rolled-back service never answered 200")
    finally:
        pid = to / "serve.pid"
        if pid.is_file():
            subprocess.run(["kill", pid.read_text().strip()], check=False)
            time.sleep(0.5)
