#!/usr/bin/env python3
"""Summarises benches/load/run's raw results: medians over rounds, paired ratios to nginx,
the targets of issue 5 marked met / not met. Prints the table; with --results FILE also
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
    "bare": "bare pingora (floor)",
    "bare-timers": "bare pingora + handoff's timeouts (diagnostics off)",
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
        for t in ("nginx", "bare", "bare-timers", "handoff"):
            if t in ir:
                share = user_share(runs, t)
                w(f"| {NAMES.get(t, t)} | {fmt(ir[t])} | "
                  f"{fmt(ir[t] / ir['nginx'] if 'nginx' in ir else float('nan'), '.2f')} | "
                  f"{fmt(share, '.2f')} |")
        w("")

    # Targets.
    w("### Targets of issue 5")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")

    def verdict(ok):
        return "–" if ok is None else ("**met**" if ok else "**not met**")

    def row(name, measured, ok):
        w(f"| {name} | {measured} | {verdict(ok)} |")

    for c in (16, 64):
        if ("handoff", c) not in runs:
            continue
        vs_bare = paired(runs, "handoff", "bare", c, "rps")
        row(f"handoff ≥ tuned bare pingora floor, c={c}",
            f"req/s × bare {fmt(vs_bare, '.2f')} "
            f"(CPU × bare {fmt(paired(runs, 'handoff', 'bare', c, 'cpu'), '.2f')})",
            None if math.isnan(vs_bare) else vs_bare >= 0.97)
        r = paired(runs, "handoff", "nginx", c, "rps")
        cpu = paired(runs, "handoff", "nginx", c, "cpu")
        row(f"handoff ≥ 0.7× nginx req/s, c={c}", f"{fmt(r, '.2f')}×",
            None if math.isnan(r) else r >= 0.7)
        row(f"handoff ≤ 1.5× nginx CPU-ms/1k, c={c}", f"{fmt(cpu, '.2f')}×",
            None if math.isnan(cpu) else cpu <= 1.5)
    for c in concs:
        # "Off" is handoff without its diagnostics: pingora with the same timeouts (a proxy
        # without read timeouts is not one anybody should run); the plain floor otherwise.
        off = "bare-timers" if ("bare-timers", c) in runs else "bare"
        if ("handoff", c) not in runs or (off, c) not in runs:
            continue
        r = paired(runs, "handoff", off, c, "rps")
        cpu = paired(runs, "handoff", off, c, "cpu")
        d = paired_diff(runs, "handoff", off, c, "p99")
        row(f"diagnostics on vs off (handoff vs {off}), timed, c={c}: ≤ 3% throughput, "
            f"≤ 20 µs p99",
            f"req/s × {off} {fmt(r, '.2f')} (CPU × {fmt(cpu, '.2f')}), "
            f"p99 {fmt(d, '+.0f')} µs",
            None if math.isnan(r) else (r >= 0.97 and d <= 20))
    if "handoff" in ir and "bare-timers" in ir:
        # A timed point varies by 5-10 % here; instructions do not. Only user space differs,
        # so the CPU cost is the instruction ratio applied to handoff's user share.
        ratio = ir["handoff"] / ir["bare-timers"]
        share = user_share(runs, "handoff")
        est = 1 + (ratio - 1) * share if not math.isnan(share) else float("nan")
        row("diagnostics on vs off (handoff vs bare-timers), counted: ≤ 3% CPU per request",
            f"user-space instructions × {ratio:.3f}; with a user share of {fmt(share, '.2f')}, "
            f"CPU per request × {fmt(est, '.3f')}",
            None if math.isnan(est) else est <= 1.03)
    if ("chain-handoff", 1) in runs:
        d = paired_diff(runs, "chain-handoff", "chain-nginx", 1, "p50")
        row("nginx → handoff → app adds ≤ 100 µs p50 at c=1 vs nginx → app",
            f"{fmt(d, '+.0f')} µs", None if math.isnan(d) else d <= 100)
    if idle0:
        v = float(idle1 or idle0) / 1024
        row("RSS ≤ 20 MiB idle",
            f"{float(idle0) / 1024:.1f} MiB at start, {v:.1f} MiB after load", v <= 20)
    for n, v in conn.items():
        m = float(v[0]) / 1024
        row(f"RSS ≤ 64 MiB at 1,000 open connections", f"{m:.1f} MiB ({n} open)", m <= 64)
    for k in ("storm-refused", "storm-closed"):
        if (k, 64) not in runs:
            continue
        s = med([r["rps"] for r in runs[(k, 64)]])
        h = med([r["rps"] for r in runs.get(("handoff", 64), [])])
        a, b = (float(x) / 1024 for x in storm_rss.get(k, ["nan", "nan"]))
        peak = max([b] + [r["rss"] for r in runs[(k, 64)]])
        flat = peak - a <= max(2.0, 0.1 * a)
        peer = ""
        nk = k.replace("storm-", "storm-nginx-")
        if (nk, 64) in runs:
            ns = med([r["rps"] for r in runs[(nk, 64)]])
            n = med([r["rps"] for r in runs.get(("nginx", 64), [])])
            peer = (f"; the peer, nginx: {fmt(ns)} vs {fmt(n)} req/s "
                    f"({fmt(ns / n if n else float('nan'), '.2f')}×), handoff's storm "
                    f"{fmt(s / ns if ns else float('nan'), '.2f')}× nginx's")
        row(f"{NAMES[k]} ≥ success path req/s (c=64), flat RSS",
            f"{fmt(s)} vs {fmt(h)} req/s ({fmt(s / h if h else float('nan'), '.2f')}×){peer}; "
            f"RSS {a:.1f} MiB before, {peak:.1f} MiB peak, {b:.1f} MiB after",
            None if math.isnan(h) else (s >= h and flat))
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
