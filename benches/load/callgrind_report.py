#!/usr/bin/env python3
"""Reads the callgrind dumps benches/load/callgrind lists and prints, per target, the
instructions per request, then where the first target's instructions differ from each
other's (self cost per function, per request).

Usage: callgrind_report.py SUMMARY.tsv [--top N] [--tsv OUT]
  SUMMARY: target, requests, dump path per line; OUT: target, requests, Ir per request
"""
import argparse
import collections
import re

FN = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def self_costs(path):
    """Self cost (Ir) per function. Handles callgrind's name compression; the cost line
    after a `calls=` line is the call's inclusive cost and is not the caller's own."""
    names, costs = {}, collections.Counter()
    current, after_call = None, False
    with open(path, errors="replace") as f:
        for line in f:
            m = FN.match(line)
            if m:
                kind, ident, name = m.groups()
                if name:
                    names[ident] = name
                if kind == "fn":
                    current = names.get(ident, ident)
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if len(fields) >= 2:
                    if after_call:
                        after_call = False
                    else:
                        costs[current] += int(fields[1])
    return costs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("summary")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--tsv")
    args = ap.parse_args()
    targets = []
    for line in open(args.summary):
        name, requests, path = line.rstrip("\n").split("\t")
        costs = self_costs(path)
        n = int(requests)
        targets.append((name, n, {k: v / n for k, v in costs.items()}))
    print(f"{'target':<14} {'requests':>9} {'Ir/request':>11}")
    for name, n, per in targets:
        print(f"{name:<14} {n:>9} {sum(per.values()):>11,.0f}")
    if args.tsv:
        with open(args.tsv, "w") as out:
            for name, n, per in targets:
                out.write(f"{name}\t{n}\t{sum(per.values()):.0f}\n")
    if len(targets) < 2:
        return
    first_name, _, first = targets[0]
    for name, _, other in targets[1:]:
        total = sum(first.values()) - sum(other.values())
        print(f"\n{first_name} - {name}: {total:+,.0f} Ir/request "
              f"({total / sum(other.values()):+.1%}); largest differences by function:")
        diff = {k: first.get(k, 0) - other.get(k, 0) for k in set(first) | set(other)}
        for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[: args.top]:
            print(f"  {v:+8,.0f}  {k[:110]}")


if __name__ == "__main__":
    main()
