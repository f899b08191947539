#!/usr/bin/env python3
"""Groups a `perf script -F ip,sym,dso` dump (stdin) by crate of the leaf frame (self time),
and, with --inclusive, also counts each crate once per sample anywhere on the stack.

Usage: perf script -i perf.data -F ip,sym,dso | benches/load/perf_crates.py [--top 25]
"""
import argparse
import re
import sys
from collections import Counter


def crate(sym, dso):
    if "kernel" in dso or dso.startswith("[k"):
        return "kernel"
    if "libc.so" in dso or "ld-linux" in dso:
        return "libc"
    if sym.startswith(("_rjem_", "je_", "_rjem")) or "jemalloc" in sym:
        return "jemalloc"
    s = sym
    # <A as B>::f and _<A as B>::f: the implementing type's crate.
    s = s.lstrip("_").lstrip("<").lstrip("&").replace("mut ", "").lstrip("dyn ").lstrip("(")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    if m:
        name = m.group(1)
        return {"core": "rust core/alloc/std", "alloc": "rust core/alloc/std",
                "std": "rust core/alloc/std"}.get(name, name)
    if sym.startswith(("mem", "__mem")):
        return "libc"
    return "other: " + (sym.split("+")[0][:40] or dso)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--symbols", type=int, default=30)
    args = ap.parse_args()
    leaf, incl, syms = Counter(), Counter(), Counter()
    total = 0
    block = []

    def flush():
        nonlocal total
        frames = []
        for line in block:
            m = re.match(r"\s*[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
            if m:
                frames.append((m.group(1), m.group(2)))
        if not frames:
            return
        total += 1
        sym, dso = frames[0]
        leaf[crate(sym, dso)] += 1
        syms[re.sub(r"\+0x[0-9a-f]+$", "", sym)[:110]] += 1
        for c in {crate(s, d) for s, d in frames}:
            incl[c] += 1

    for line in sys.stdin:
        if line.strip() == "":
            flush()
            block = []
        else:
            block.append(line)
    flush()
    if not total:
        print("no samples")
        return
    print(f"{total} samples\n")
    print(f"{'crate (leaf frame)':<40} {'self %':>7} {'incl %':>7}")
    for c, n in leaf.most_common(args.top):
        print(f"{c:<40} {100 * n / total:>7.1f} {100 * incl[c] / total:>7.1f}")
    print(f"\n{'symbol (leaf)':<110} {'self %':>7}")
    for s, n in syms.most_common(args.symbols):
        print(f"{s:<110} {100 * n / total:>7.1f}")


main()
