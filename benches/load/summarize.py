#!/usr/bin/env python3
"""Summarises benches/load/run's raw results: medians over rounds, paired ratios to nginx,
the targets of issue 12 (handoff's own proxy loop) marked met / not met. Prints the table; with --results FILE also
writes it into FILE between the markers below (the rest of FILE is kept).

Usage: summarize.py RAW.tsv EXTRA.tsv [--results benches/RESULTS.md]
"""
import argparse
import math
import os
import statistics
from collections import defaultdict

BEGIN = "<!-- load:begin (written by benches/load/run; edits here are overwritten) -->"
END = "<!-- load:end -->"
ORDER = [
    "direct",
    "nginx",
    "haproxy",
    "bare",
    "bare-timers",
    "handoff-old",
    "bare-core",
    "handoff",
    "chain-nginx",
    "chain-handoff",
    "storm-nginx-refused",
    "storm-refused",
    "storm-nginx-closed",
    "storm-closed",
]
NAMES = {
    "direct": "direct to the app",
    "nginx": "nginx proxy",
    "haproxy": "HAProxy",
    "bare": "bare pingora-proxy (the old floor)",
    "bare-timers": "bare pingora-proxy + handoff's timeouts",
    "handoff-old": "handoff on pingora-proxy (before, 3e3d761)",
    "bare-core": "bare-core: handoff's loop, no diagnostics (the floor)",
    "handoff": "handoff (full diagnostics)",
    "chain-nginx": "nginx → app",
    "chain-handoff": "nginx → handoff → app",
    "storm-nginx-refused": "storm: connect_refused, nginx proxy (peer)",
    "storm-nginx-closed": "storm: closed_before_response, nginx proxy (peer)",
    "storm-refused": "storm: connect_refused",
    "storm-closed": "storm: closed_before_response",
}


def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def load(raw):
    runs = defaultdict(list)  # (label, conc) -> [row]
    for line in open(raw):
        f = line.rstrip("\n").split("\t")
        if len(f) < 11:
            continue
        row = {
            "round": int(f[2]),
            "rps": float(f[3]),
            "p50": float(f[4]),
            "p99": float(f[5]),
            "cpu": float(f[6]),
            "rss": float(f[7]) / 1024,
            "requests": int(f[8]),
            "errors": int(f[9]),
            "non2xx": int(f[10]),
            "user": float(f[11]) if len(f) > 11 else float("nan"),
        }
        runs[(f[0], int(f[1]))].append(row)
    return runs


def paired(runs, a, b, conc, key):
    """Median over rounds of a/b for the same round and concurrency."""
    by_round = {r["round"]: r[key] for r in runs.get((b, conc), [])}
    ratios = [
        r[key] / by_round[r["round"]]
        for r in runs.get((a, conc), [])
        if by_round.get(r["round"])
    ]
    return med(ratios)


def paired_diff(runs, a, b, conc, key):
    by_round = {r["round"]: r[key] for r in runs.get((b, conc), [])}
    diffs = [
        r[key] - by_round[r["round"]]
        for r in runs.get((a, conc), [])
        if r["round"] in by_round
    ]
    return med(diffs)


def user_share(runs, target):
    """Median user-space share of the target's CPU over its c=16 and c=64 points."""
    return med([r["user"] for c in (16, 64) for r in runs.get((target, c), [])])


def fmt(x, spec=",.0f"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("extra")
    ap.add_argument("--results")
    ap.add_argument("--callgrind", help="ir.tsv written by load/callgrind")
    args = ap.parse_args()
    ir = {}
    if args.callgrind:
        for line in open(args.callgrind):
            f = line.rstrip("\n").split("\t")
            ir[f[0]] = float(f[2])
    runs = load(args.raw)
    extra = defaultdict(dict)
    for line in open(args.extra):
        f = line.rstrip("\n").split("\t")
        extra[f[0]][f[1]] = f[2:]
    meta = {k: v[0] for k, v in extra["meta"].items()}
    concs = sorted({c for (_, c) in runs})
    out = []
    w = out.append

    w(f"Run: {meta.get('date', '?')}; {meta.get('rounds')} interleaved rounds × "
      f"{meta.get('dur')} s per point; wrk -t1 --latency"
      f"{', with an X-Request-Id header as nginx sends it (`handoff nginx-snippet`)' if meta.get('request_id') == '1' else ', no X-Request-Id (handoff generates one per request)'}; "
      f"{'proxy under test pinned to CPU 1, wrk and the app to CPU 0' if meta.get('pinned') == '1' else 'unpinned'}.")
    w("")
    w(f"Machine: {meta.get('nproc')} CPUs, {meta.get('cpu')}, kernel {meta.get('kernel')}; "
      f"{meta.get('versions')}.")
    w(f"Load average (1/5/15 min) before: {meta.get('load_before')}, after: "
      f"{meta.get('load_after')}; the run took {meta.get('duration_s')} s.")
    w("")
    w(f"Command: `{meta.get('command')}`")
    w("")
    w("Medians over rounds. `× nginx` = paired ratio to the nginx proxy in the same round and "
      "concurrency (median over rounds); chains are paired with nginx → app. CPU = CPU-ms per "
      "1,000 requests of the proxy process(es) under test (nginx master excluded; chain "
      "rows: front nginx worker + handoff; direct: the app). RSS = VmRSS of the proxy (chain: "
      "handoff / front nginx) at the end of the point.")
    w("")
    w("| conc | target | req/s | × nginx | p50 µs | p99 µs | CPU-ms/1k | CPU × nginx | RSS MiB | errors |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        for t in ORDER:
            rows = runs.get((t, c))
            if not rows:
                continue
            ref = "chain-nginx" if t.startswith("chain") else "nginx"
            if t.startswith("storm"):
                ref = "nginx"
            rps = med([r["rps"] for r in rows])
            ratio = paired(runs, t, ref, c, "rps") if (ref, c) in runs else float("nan")
            cpu = med([r["cpu"] for r in rows])
            cpu_ratio = paired(runs, t, ref, c, "cpu") if (ref, c) in runs else float("nan")
            errors = sum(r["errors"] for r in rows)
            w(f"| {c} | {NAMES.get(t, t)} | {fmt(rps)} | {fmt(ratio, '.2f')} | "
              f"{fmt(med([r['p50'] for r in rows]))} | {fmt(med([r['p99'] for r in rows]))} | "
              f"{fmt(cpu, '.1f')} | {fmt(cpu_ratio, '.2f')} | "
              f"{fmt(med([r['rss'] for r in rows]), '.1f')} | {errors} |")
    w("")

    # RSS extras.
    idle0 = extra["idle_rss"].get("handoff_start", [None])[0]
    idle1 = extra["idle_rss"].get("handoff_after_load", [None])[0]
    conn = extra.get("conn_rss", {})
    w("handoff RSS: idle at start "
      f"{fmt(float(idle0) / 1024, '.1f') if idle0 else '–'} MiB, idle after the rounds "
      f"{fmt(float(idle1) / 1024, '.1f') if idle1 else '–'} MiB"
      + "".join(f", with {n} open idle client connections {float(v[0]) / 1024:.1f} MiB"
                for n, v in conn.items()) + ".")
    storm_rss = extra.get("storm_rss", {})
    for k, (a, b) in ((k, v) for k, v in storm_rss.items()):
        during = [r["rss"] for r in runs.get((k, 64), [])]
        w(f"{NAMES.get(k, k)}: RSS {float(a) / 1024:.1f} MiB before the storm, "
          f"{max(during, default=float('nan')):.1f} MiB at most at the end of a point, "
          f"{float(b) / 1024:.1f} MiB 1 s after.")
    w("")

    # Instruction counts.
    if ir:
        w("User-space instructions per request (`load/callgrind`: callgrind, c=16, "
          "each target alone; repeats agree within ~1 %; the kernel's work is not counted, and "
          "handoff and bare make the same system calls per request). CPU user share: "
          "utime ÷ (utime + stime) of the timed c=16 and c=64 points.")
        w("")
        w("| target | instructions per request | × nginx | CPU user share |")
        w("|---|---:|---:|---:|")
        for t in ("nginx", "bare", "bare-timers", "handoff-old", "bare-core", "handoff"):
            if t in ir:
                share = user_share(runs, t)
                w(f"| {NAMES.get(t, t)} | {fmt(ir[t])} | "
                  f"{fmt(ir[t] / ir['nginx'] if 'nginx' in ir else float('nan'), '.2f')} | "
                  f"{fmt(share, '.2f')} |")
        w("")

    # Targets.
    w("### Targets of issue 12")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")

    def verdict(ok):
        return "–" if ok is None else ("**met**" if ok else "**not met**")

    def row(name, measured, ok):
        w(f"| {name} | {measured} | {verdict(ok)} |")

    def known(x):
        return not (x is None or (isinstance(x, float) and math.isnan(x)))

    if "handoff" in ir and "nginx" in ir:
        r = ir["handoff"] / ir["nginx"]
        floors = ", ".join(f"{NAMES[t].split(':')[0]} {ir[t] / ir['nginx']:.2f}×"
                           for t in ("bare-core", "bare", "handoff-old") if t in ir)
        row("instructions per request ≤ 2.0× nginx (callgrind)",
            f"{r:.2f}× ({fmt(ir['handoff'])} vs {fmt(ir['nginx'])}); {floors}", r <= 2.0)
    for c in (16, 64):
        if ("handoff", c) not in runs:
            continue
        cpu = paired(runs, "handoff", "nginx", c, "cpu")
        rps = paired(runs, "handoff", "nginx", c, "rps")
        old = paired(runs, "handoff-old", "nginx", c, "cpu")
        was = f" (before: {fmt(old, '.2f')}×)" if known(old) else ""
        row(f"CPU per request ≤ 1.3× nginx, c={c}", f"{fmt(cpu, '.2f')}×{was}",
            cpu <= 1.3 if known(cpu) else None)
        old = paired(runs, "handoff-old", "nginx", c, "rps")
        was = f" (before: {fmt(old, '.2f')}×)" if known(old) else ""
        row(f"req/s ≥ 0.8× nginx, c={c}", f"{fmt(rps, '.2f')}×{was}",
            rps >= 0.8 if known(rps) else None)
    for c in (16, 64):
        if ("chain-handoff", c) not in runs:
            continue
        r = paired(runs, "chain-handoff", "chain-nginx", c, "rps")
        row(f"nginx → handoff → app ≥ 0.45× nginx → app req/s, c={c}", f"{fmt(r, '.2f')}×",
            r >= 0.45 if known(r) else None)
    for k in ("storm-refused", "storm-closed"):
        nk = k.replace("storm-", "storm-nginx-")
        if (k, 64) not in runs or (nk, 64) not in runs:
            continue
        s = med([r["rps"] for r in runs[(k, 64)]])
        ns = med([r["rps"] for r in runs[(nk, 64)]])
        a, b = (float(x) / 1024 for x in storm_rss.get(k, ["nan", "nan"]))
        peak = max([b] + [r["rss"] for r in runs[(k, 64)]])
        flat = peak - a <= max(2.0, 0.1 * a)
        row(f"{NAMES[k]} at least as fast as nginx's own (c=64), flat RSS",
            f"{fmt(s)} vs nginx's {fmt(ns)} req/s ({fmt(s / ns if ns else float('nan'), '.2f')}×); "
            f"RSS {a:.1f} MiB before, {peak:.1f} MiB peak, {b:.1f} MiB after",
            (s >= ns and flat) if known(s) and known(ns) else None)
    for n, v in conn.items():
        m = float(v[0]) / 1024
        row("RSS ≤ 16 MiB with 1,000 idle client connections",
            f"{m:.1f} MiB ({n} open; idle {fmt(float(idle0) / 1024, '.1f') if idle0 else '–'} MiB)",
            m <= 16)
    if "handoff" in ir and "bare-core" in ir:
        ratio = ir["handoff"] / ir["bare-core"]
        share = user_share(runs, "handoff")
        est = 1 + (ratio - 1) * share if known(share) else float("nan")
        row("diagnostics on vs off ≤ 3 % by count (handoff vs bare-core)",
            f"instructions × {ratio:.3f}; with handoff's user share of CPU "
            f"({fmt(share, '.2f')}), CPU per request × {fmt(est, '.3f')}",
            ratio <= 1.03)
    for c in (16, 64):
        if ("handoff", c) not in runs or ("bare-core", c) not in runs:
            continue
        r = paired(runs, "handoff", "bare-core", c, "rps")
        cpu = paired(runs, "handoff", "bare-core", c, "cpu")
        row(f"diagnostics on vs off, timed, c={c} (for reference: ±5-10 % noise here)",
            f"req/s × bare-core {fmt(r, '.2f')}, CPU × {fmt(cpu, '.2f')}", None)
    if ("chain-handoff", 1) in runs:
        d = paired_diff(runs, "chain-handoff", "chain-nginx", 1, "p50")
        row("nginx → handoff → app adds ≤ 100 µs p50 at c=1 (issue 5)",
            f"{fmt(d, '+.0f')} µs", None if math.isnan(d) else d <= 100)
    if idle0:
        v = float(idle1 or idle0) / 1024
        row("RSS ≤ 20 MiB idle (issue 5)",
            f"{float(idle0) / 1024:.1f} MiB at start, {v:.1f} MiB after load", v <= 20)
    text = "\n".join(out)
    print(text)
    if args.results:
        block = f"{BEGIN}\n{text}\n{END}"
        if os.path.exists(args.results):
            old = open(args.results).read()
            if BEGIN in old and END in old:
                pre, rest = old.split(BEGIN, 1)
                post = rest.split(END, 1)[1]
                new = pre + block + post
            else:
                new = old.rstrip("\n") + "\n\n" + block + "\n"
        else:
            new = f"# Load benchmark results\n\n{block}\n"
        with open(args.results, "w") as f:
            f.write(new)
        print(f"\nwritten to {args.results}")


main()
