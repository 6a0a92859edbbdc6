"""Device side: edgecnn fleet: the boards in fleet.yaml, each asked over SSH: reachable, versions, throttling."""

from __future__ import annotations

HELP = "list the boards in fleet.yaml and ask each over SSH: reachable, edgecnn version, detected profile, throttling"


def add_arguments(p) -> None:
    p.add_argument("names", nargs="*", help="only these boards (default: all)")
    p.add_argument("--fleet-file", metavar="FILE", help="the fleet file (default $EDGECNN_FLEET or ~/.config/edgecnn/fleet.yaml)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    import json

    from edgecnn.cli import console
    from edgecnn.cli.tables import Column, fitted
    from edgecnn.errors import ConfigError
    from edgecnn.registry import did_you_mean
    from edgecnn.remote.fleet import fleet_path, fleet_status, load_fleet

    fleet = load_fleet(args.fleet_file, required=True)
    for name in args.names:
        if name not in fleet:
            raise ConfigError(f"no board {name!r} in {fleet_path(args.fleet_file)}", hint=did_you_mean(name, sorted(fleet)))
    boards = [fleet[n] for n in (args.names or sorted(fleet))]
    status = fleet_status(boards)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        out = console()
        columns = [
            Column("board"),
            Column("url", keep=1),
            Column("profile", keep=3),
            Column("reachable"),
            Column("edgecnn", keep=4),
            Column("arch", keep=2),
            Column("throttled", keep=0),
            Column("error", keep=5, fold_to=30),
        ]
        rows = [
            [
                s["board"],
                s["url"],
                s.get("device") or s.get("detected") or "-",
                "yes" if s["reachable"] else "no",
                s.get("edgecnn", "-"),
                s.get("arch") or "-",
                s.get("throttled") or "-",
                s.get("error", ""),
            ]
            for s in status
        ]
        out.print(fitted(f"fleet ({fleet_path(args.fleet_file)})", columns, rows, out.width))
    return 0 if all(s["reachable"] for s in status) else 1
