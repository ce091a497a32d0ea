"""Notifier benchmark: alert -> email accepted by a real SMTP server, and a burst of alerts delivered.

Run: `.venv/bin/python -m bench.bench_notify` (BENCH_QUICK=1 for a short run). The system under test is
`python -m notify` with a `python -m tickerplant`; the receivers are real (aiosmtpd, aiohttp, from
tests/receivers.py) in this process. Latency is from just before the alert row is published to the
tickerplant (what calc does when a tick breaches a rule) to the SMTP server accepting the message
(its DATA handler), one alert at a time. Then the whole path: a real calc on the demo's reference data,
a threshold rule on FUND1 half way between its requirement at two AMD prices, and AMD quotes alternating
between them, so that every tick starts or ends the breach: from the quote's publication to the email
(the alert, or its clearing) accepted by the SMTP server.
The burst publishes N alerts in one batch and reports deliveries per second from the publish to the
last message received, and the notifier's peak resident memory (VmHWM) before and after.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import math

import numpy as np

from bench.harness import REPO, TickerplantProcess, free_endpoint, wait_for
from common.alertrules import Rule, rule_batch
from common.alerts import alert_batch, alert_row
from common.rpc import RpcClient
from common.rpc import rpc_answer
from tests.receivers import HttpReceiver, SmtpReceiver
from tickerplant.client import Publisher

QUICK = bool(os.environ.get("BENCH_QUICK"))


def alert(i: int) -> dict:
    return alert_row(time.time_ns(), f"ACC{i % 50}", "stresscall", "high", f"stress call #{i}", model="fhs",
                     value=1.25e6, threshold=5e5, drivers="AMD:2400000;NVDA:800000", stress=3.1e6)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_notify(tp: TickerplantProcess, *channel_args: str) -> tuple[subprocess.Popen, str]:
    status = free_endpoint()
    proc = subprocess.Popen([sys.executable, "-m", "notify", "--config", "none", "--control", tp.control,
                             "--ingest", tp.ingest, "--status", status, "--log-level", "WARNING", *channel_args],
                            cwd=REPO)
    wait_for(lambda: rpc_answer(status), "notify", timeout=60)
    return proc, status


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def latency(n: int) -> np.ndarray:
    tp, smtp = TickerplantProcess(), SmtpReceiver()
    proc, _ = start_notify(tp, "--smtp", f"127.0.0.1:{smtp.port}", "--to", "cro@example.com")
    pub = Publisher("bench-calc", tp.ingest)
    out = []
    try:
        for i in range(n):
            t0 = time.monotonic()
            pub.publish("alert", alert_batch([alert(i)]))
            wait_for(lambda: len(smtp.messages) > i, "the email", timeout=30)
            out.append(smtp.messages[i].accepted_at - t0)
            pub.poll(0)
            time.sleep(0.02)
    finally:
        stop(proc)
        smtp.close()
        tp.close()
    return np.array(out)


def amd_quote(price: float) -> dict:
    nan = np.array([math.nan])
    return {"sym": np.array(["AMD"], dtype=object), "bid": nan, "ask": nan, "price": np.array([price]), "size": nan,
            "vol": nan, "src": np.array(["bench"], dtype=object)}


def tick_to_email(n: int) -> np.ndarray:
    tp, smtp = TickerplantProcess(), SmtpReceiver()
    query = free_endpoint()
    subprocess.run([sys.executable, "-m", "feedhandlers.refdata", "--ingest", tp.ingest], cwd=REPO, check=True)
    calc = subprocess.Popen([sys.executable, "-m", "calc", "--control", tp.control, "--ingest", tp.ingest,
                             "--query", query, "--log-level", "WARNING"], cwd=REPO)
    proc, _ = start_notify(tp, "--smtp", f"127.0.0.1:{smtp.port}", "--to", "cro@example.com")
    pub = Publisher("bench-feed", tp.ingest)
    out = []
    try:
        wait_for(lambda: (s := rpc_answer(query)) and s["accounts"] >= 3 and not s["pending"], "calc", timeout=120)
        rpc = RpcClient(query, timeout=10)

        def requirement_at(price: float) -> float:
            seq = pub.publish_sync("quote", amd_quote(price))
            wait_for(lambda: rpc.call("status")["seq"] >= seq and not rpc.call("status")["pending"], "calc")
            rows = rpc.call("margin", accounts=["FUND1"])["margin"]
            return rows["requirement"][0]

        low, high = requirement_at(10.0), requirement_at(11.0)
        pub.publish_sync("alertrule", rule_batch([Rule("bench", "account", "FUND1", "threshold", (low + high) / 2,
                                                       severity="high", time=time.time_ns())]))
        prices = (10.0, 11.0) if high > low else (11.0, 10.0)          # [0]: below the level, [1]: above
        requirement_at(prices[0])
        base = len(smtp.messages)
        for i in range(n):
            t0 = time.monotonic()
            pub.publish("quote", amd_quote(prices[(i + 1) % 2] + 0.001 * (i % 7)))
            wait_for(lambda: len(smtp.messages) > base + i, "the email", timeout=30)
            out.append(smtp.messages[base + i].accepted_at - t0)
            pub.poll(0)
            time.sleep(0.05)
    finally:
        stop(proc)
        stop(calc)
        smtp.close()
        tp.close()
    return np.array(out)


def burst(n: int, channel: str) -> dict:
    tp = TickerplantProcess()
    smtp, http = SmtpReceiver(), HttpReceiver()
    args = (["--smtp", f"127.0.0.1:{smtp.port}", "--to", "cro@example.com"] if channel == "smtp"
            else ["--webhook", http.url("hook")])
    proc, status = start_notify(tp, *args)
    pub = Publisher("bench-calc", tp.ingest)
    try:
        before = peak_rss_mb(proc.pid)
        rows = [alert(i) for i in range(n)]
        t0 = time.monotonic()
        pub.publish("alert", alert_batch(rows))
        got = (lambda: len(smtp.messages)) if channel == "smtp" else (lambda: len(http.posts))
        wait_for(lambda: got() >= n, "the burst", timeout=300)
        last = smtp.messages[-1].accepted_at if channel == "smtp" else http.posts[-1][4]
        wait_for(lambda: (s := rpc_answer(status)) and s.get("notices", 0) >= n, "the notices", timeout=60)
        return {"channel": channel, "alerts": n, "per_s": n / (last - t0), "rss_before": before,
                "rss_after": peak_rss_mb(proc.pid)}
    finally:
        stop(proc)
        smtp.close()
        http.close()
        tp.close()


def main() -> None:
    n_lat = 30 if QUICK else 200
    lat = latency(n_lat) * 1e3
    print(f"alert published -> email accepted by the SMTP server ({n_lat} alerts, one at a time)")
    print(f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{np.percentile(lat, 50):>8.1f} {np.percentile(lat, 99):>8.1f} {lat.max():>8.1f}", flush=True)
    n_tick = 20 if QUICK else 100
    lat = tick_to_email(n_tick) * 1e3
    print(f"\nAMD tick -> calc -> alert -> notify -> email accepted ({n_tick} ticks, each starting or ending a breach)")
    print(f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{np.percentile(lat, 50):>8.1f} {np.percentile(lat, 99):>8.1f} {lat.max():>8.1f}", flush=True)
    n = 200 if QUICK else 1000
    print(f"\nburst of {n} alerts in one batch -> delivered (concurrency 32)")
    print(f"{'channel':<8} {'alerts':>7} {'delivered/s':>12} {'peak RSS MB before':>19} {'after':>7}")
    for channel in ("smtp", "webhook"):
        r = burst(n, channel)
        print(f"{r['channel']:<8} {r['alerts']:>7} {r['per_s']:>12,.0f} {r['rss_before']:>19.1f} "
              f"{r['rss_after']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
