"""Host side: where the test suite's time goes, from a run with EDGECNN_TEST_CPU_LOG=FILE (tests/conftest.py).

    EDGECNN_TEST_CPU_LOG=/tmp/cpu.jsonl bash tools/test.sh && python tools/suite_cpu.py /tmp/cpu.jsonl

Prints per worker its wall time and CPU seconds, then the test files and tests that cost the most CPU (their own
process plus the children they waited for) and those that mostly wait (wall well above CPU): on 2 busy cores the
first kind sets the suite's floor, the second costs nothing when another worker has work to do."""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    recs = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    for r in recs:
        r["cpu"] = r["self"] + r["children"]
    by_worker: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for r in recs:
        w = by_worker[r["worker"]]
        w[0] += r["wall"]
        w[1] += r["cpu"]
        w[2] += 1
    print("worker   tests   wall s    CPU s")
    for name, (wall, cpu, n) in sorted(by_worker.items()):
        print(f"{name:8} {n:5} {wall:8.0f} {cpu:8.0f}")
    total = sum(r["cpu"] for r in recs)
    print(f"all      {len(recs):5} {sum(r['wall'] for r in recs):8.0f} {total:8.0f}")
    timeline(recs)
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for r in recs:
        f = files[r["test"].split("::")[0]]
        f[0] += r["wall"]
        f[1] += r["cpu"]
    print(f"\ntest files by CPU (top {args.top}): CPU s, wall s, share of all CPU")
    for name, (wall, cpu) in sorted(files.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"{cpu:7.0f} {wall:7.0f} {100 * cpu / total:5.1f}%  {name}")
    print(f"\ntests by CPU (top {args.top}): CPU s (own + children), wall s")
    for r in sorted(recs, key=lambda r: -r["cpu"])[: args.top]:
        print(f"{r['cpu']:7.1f} ({r['self']:5.1f} + {r['children']:5.1f}) {r['wall']:6.1f}  {r['test']}")
    waiting = sorted(recs, key=lambda r: -(r["wall"] - r["cpu"]))[: args.top]
    print(f"\ntests that mostly wait (top {args.top}): wall s, CPU s")
    for r in waiting:
        print(f"{r['wall']:7.1f} {r['cpu']:7.1f}  {r['test']}")
    return 0


def timeline(recs: list[dict]) -> None:
    """When each worker started and ended (logs from a conftest that records each test's start): a worker that ends
    well before the others left its cores idle; its last test files are the ones to split or to start earlier."""
    timed = [r for r in recs if "start" in r]
    if not timed:
        return
    t0 = min(r["start"] for r in timed)
    spans: dict[str, list[dict]] = collections.defaultdict(list)
    for r in timed:
        spans[r["worker"]].append(r)
    parallel = [w for w in spans if w != "serial"]
    last = max((r["start"] + r["wall"] for w in parallel for r in spans[w]), default=t0)
    print("\nworker   from s    to s  idle at the end s  last files")
    for name, rs in sorted(spans.items()):
        rs.sort(key=lambda r: r["start"])
        end = rs[-1]["start"] + rs[-1]["wall"]
        tail: list[str] = []
        for r in reversed(rs):
            f = r["test"].split("::")[0]
            if f not in tail:
                tail.append(f)
            if len(tail) == 3:
                break
        idle = f"{last - end:17.0f}" if name != "serial" else f"{'':>17}"
        print(f"{name:8} {rs[0]['start'] - t0:6.0f} {end - t0:7.0f} {idle}  {', '.join(reversed(tail))}")


if __name__ == "__main__":
    raise SystemExit(main())
