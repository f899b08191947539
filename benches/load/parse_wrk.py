#!/usr/bin/env python3
"""Turns one `wrk --latency` output (stdin) into one TSV line for benches/load/run.

Arguments: LABEL CONC ROUND CPU_TICKS CLK_TCK RSS_KIB USER_TICKS
Columns:   label conc round req_s p50_us p99_us cpu_ms_per_1k rss_kib requests errors non2xx
           user_share (user-space share of the CPU ticks)
"""
import re
import sys


def micros(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def main():
    label, conc, rnd, ticks, hz, rss, user_ticks = sys.argv[1:8]
    out = sys.stdin.read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    reqs = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errs = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(reqs.group(1)) if reqs else 0
    cpu_ms = int(ticks) * 1000.0 / int(hz)
    per_1k = cpu_ms / requests * 1000 if requests else float("nan")
    errors = sum(int(g) for g in errs.groups()) if errs else 0
    if not rps:
        sys.stderr.write(f"wrk failed for {label} c={conc}:\n{out}\n")
    print(
        "\t".join(
            str(x)
            for x in [
                label,
                conc,
                rnd,
                f"{float(rps.group(1)) if rps else 0:.0f}",
                f"{micros(p50.group(1)) if p50 else float('nan'):.0f}",
                f"{micros(p99.group(1)) if p99 else float('nan'):.0f}",
                f"{per_1k:.1f}",
                rss,
                requests,
                errors,
                int(non2xx.group(1)) if non2xx else 0,
                f"{int(user_ticks) / int(ticks):.3f}" if int(ticks) else "nan",
            ]
        )
    )


main()
