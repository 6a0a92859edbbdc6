"""Device side: the options that send a command to a board over SSH (``--on``), shared by profile, verify, deploy."""

from __future__ import annotations

from typing import Any


def add_board_arguments(p: Any, *, required: bool = False) -> None:
    g = p.add_argument_group("on a board over SSH")
    g.add_argument(
        "--on",
        required=required,
        metavar="BOARD",
        help="ssh://[user@]host[:port] or a board's name in fleet.yaml: run it there with the board's own edgecnn",
    )
    g.add_argument("--ssh-config", metavar="FILE", help="ssh client configuration (passed to ssh as -F)")
    g.add_argument("--remote-edgecnn", metavar="PATH", help="the board's edgecnn command (default: edgecnn on its PATH)")
    g.add_argument("--remote-cache", metavar="DIR", help="where copies are kept on the board (default ~/.cache/edgecnn/remote)")
    g.add_argument("--fleet-file", metavar="FILE", help="the fleet file (default $EDGECNN_FLEET or ~/.config/edgecnn/fleet.yaml)")


def board_from(args: Any) -> Any:
    """The Board that --on names, with the command line's overrides; checked before any work."""
    from pathlib import Path

    from edgecnn.errors import ConfigError
    from edgecnn.remote.fleet import load_fleet
    from edgecnn.remote.transport import parse_board

    if args.ssh_config and not Path(args.ssh_config).is_file():
        raise ConfigError(f"--ssh-config {args.ssh_config}: no such file")
    fleet = load_fleet(args.fleet_file) if not args.on.startswith("ssh://") or args.fleet_file else {}
    return parse_board(args.on, fleet=fleet, edgecnn=args.remote_edgecnn, cache=args.remote_cache, ssh_config=args.ssh_config)
