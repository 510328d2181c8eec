#!/usr/bin/env python3
"""Simulated time per kernel in a simulator trace (bench train/generate --trace).

Kernels run one after another (each launch ends with a fence), so each run of consecutive
events of one kernel ('cat') is one launch; its time is its last end minus its first start.

Usage: bench/trace_kernels.py TRACE.json[.gz] [TOP]
"""
import collections
import gzip
import json
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        events = sorted((e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"),
                        key=lambda e: e["ts"])
    if not events:
        sys.exit(f"{path}: no instructions in the trace")
    total, launches = collections.Counter(), collections.Counter()
    kernel, start, end = None, 0.0, 0.0
    for e in events + [None]:
        if e is None or e["cat"] != kernel:
            if kernel is not None:
                total[kernel] += end - start
                launches[kernel] += 1
            if e is None:
                break
            kernel, start, end = e["cat"], e["ts"], e["ts"] + e["dur"]
        else:
            end = max(end, e["ts"] + e["dur"])
    span = events[-1]["ts"] + events[-1]["dur"] - events[0]["ts"]
    print(f"{path}: {span / 1000:.3f} ms simulated")
    for name, us in total.most_common(top):
        print(f"  {name:32s} {us / 1000:9.3f} ms {100 * us / span:5.1f}%  {launches[name]} launches")


if __name__ == "__main__":
    main()
