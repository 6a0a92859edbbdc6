"""systemd supervision: ``Type=notify`` readiness, the watchdog, ``STATUS=`` lines, and the hardened unit file.

The notification protocol is one datagram per message to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path,
or an abstract name written with a leading ``@``); ``$WATCHDOG_USEC`` is the watchdog interval systemd expects a
``WATCHDOG=1`` within, and ``$WATCHDOG_PID`` the process it applies to (sd_notify(3), sd_watchdog_enabled(3)).
Without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing. The watchdog is pinged only while every source
has classified a frame within the stale bound: a stuck loop or a dead camera stops the pings, and systemd restarts
the service (``WatchdogSec``), which is the point.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgecnn.errors import ConfigError


class Notifier:
    """sd_notify without libsystemd; ``enabled`` is False (and ``send`` a no-op) outside systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock: socket.socket | None = None
        if self.address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())) else 0.0
        self.sent: int = 0

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, **fields: str | int) -> bool:
        """One message (``READY=1``, ``STATUS=...``); False when it could not be sent (systemd went away)."""
        if self.sock is None:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            self.sock.sendto(text.encode("utf-8", "replace"), self.address)
        except OSError:
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Watchdog:
    """Pings ``WATCHDOG=1`` every half interval while ``healthy()`` says so (its own thread)."""

    def __init__(self, notifier: Notifier, healthy: Callable[[], bool]) -> None:
        self.notifier, self.healthy = notifier, healthy
        self.pings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.notifier.enabled or not self.notifier.watchdog:
            return
        self._thread = threading.Thread(target=self._run, name="edgecnn-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        every = self.notifier.watchdog / 2
        while not self._stop.wait(every):
            if self.healthy() and self.notifier.send(watchdog=1):
                self.pings += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


UNIT = """[Unit]
Description=edgecnn camera classifier (edgecnn serve)
Documentation=https://pypi.org/project/edgecnn/
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
WatchdogSec={watchdog_s}
TimeoutStopSec=10
KillSignal=SIGTERM
User={user}
Group={user}
SupplementaryGroups=video
Environment=PYTHONUNBUFFERED=1
# the broker's password, if any: EDGECNN_MQTT_PASSWORD=... in this file (mode 600), never on the command line
EnvironmentFile=-/etc/edgecnn/{user}.env
StateDirectory=edgecnn
CacheDirectory=edgecnn
{rw}ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=true
NoNewPrivileges=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0027

[Install]
WantedBy=multi-user.target
"""


def unit(
    argv: list[str],
    *,
    user: str = "edgecnn",
    writable: list[str] | None = None,
    watchdog_s: int = 30,
    executable: str | None = None,
) -> str:
    """A hardened ``Type=notify`` unit that runs ``edgecnn serve`` with ``argv`` (the serve arguments, without
    --print-unit): its own user, a read-only system, only ``writable`` (health log, state) writable, restarted on
    failure and by the watchdog, reloaded by SIGHUP."""
    if watchdog_s < 2:
        raise ConfigError(f"--watchdog-sec must be at least 2 seconds; received {watchdog_s}")
    exe = [executable] if executable else _edgecnn_executable()
    command = " ".join(shlex.quote(a) for a in [*exe, "serve", *argv])
    paths = sorted({str(Path(p)) for p in writable or []})
    rw = f"ReadWritePaths={' '.join(paths)}\n" if paths else ""
    return UNIT.format(command=command, watchdog_s=watchdog_s, user=user, rw=rw)


def _edgecnn_executable() -> list[str]:
    """The ``edgecnn`` script beside this interpreter (a venv's), else ``python -m edgecnn``."""
    script = Path(sys.executable).with_name("edgecnn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecnn"]


def status_line(sources: dict[str, dict], fps: float) -> str:
    """The one-line STATUS= systemd shows in ``systemctl status``."""
    states = ", ".join(f"{name}: {s.get('state') or 'unknown'}" for name, s in sources.items())
    return f"{states} ({fps:.1f} fps)"


def monotonic_usec() -> int:
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
