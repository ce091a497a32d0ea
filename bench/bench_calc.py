"""Live engine benchmark: latency from an event to its margin row through calc.engine (book update,
incremental risk, margin row), side by side with a plain numpy full recompute of the same account,
and end to end through real processes.

In process (synthetic history of 500 instruments, 1,000 one-day historical scenarios, 99%):
- fill: one fill on an account of 500 positions -> `engine.apply` + `engine.margin` (the row calc
  publishes), against numpy: values from the holdings, ``values @ shocks``, ``np.partition``;
- tick: one quote of an instrument held by the account, the same way;
- what-if: one hypothetical trade on a copy (calc.whatif: before / after / delta), with and without
  the top-5 drivers after; "cold" computes the before side too (an input arrived since the last
  what-if), "warm" reuses it from calc's BeforeCache (no input since: a burst of pre-trade checks);
- what-if floor: the after side's one kernel call (kernels.tail_measures with the trade pending) with
  its inputs ready: the least any what-if costs;
- host floor: the same pure-Python work every call, sized to a p50 of 10, 20 and 30 us and to the
  warm what-if's p50: the p99 this host gives any computation of that length (VM interruptions, not
  our code), so the longest computation whose p99 stays within a target;
- host interruptions: a loop reading the clock for a second counts the gaps of over 5 us (the CPU
  taken away) and their median length;
- host speed phases: the warm what-if, its kernel call alone and fixed Python work, run call by call
  in turn for a few seconds, each one's p50 per quarter second: when all three slow down together
  in the same windows, the machine is running slower, not our code;
- start-up full revaluation of 1,000 accounts x 500 positions (engine.build_risk per account).
The numpy reference keeps a values vector too and recomputes ``values @ shocks`` + ``np.partition``
per event (what a non-incremental engine pays).
End to end, one fill at a time, real processes: a FIX ExecutionReport from a QuickFIX initiator in
this process -> `python -m feedhandlers.fix` (sync acks) -> `python -m tickerplant` (group commit)
-> `python -m calc` -> its margin row at a Subscriber here; and the same with the fill published
straight into the tickerplant.

Run: `.venv/bin/python -m bench.bench_calc` (BENCH_QUICK=1: fewer events).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import latencies_us
from calc import kernels
from calc.config import parse_config
from calc.engine import MarginEngine
from calc.whatif import BeforeCache, what_if
from common.history import History

QUICK = os.environ.get("BENCH_QUICK") == "1"
EVENTS = 2_000 if QUICK else 20_000
E2E_FILLS = 200 if QUICK else 1_000
ACCOUNTS_FULL = 100 if QUICK else 1_000
N, S = 500, 1000
T0 = np.datetime64("2026-01-05T14:00:00", "ns")
REPO = Path(__file__).resolve().parent.parent


def synthetic_history(rng) -> History:
    """N correlated random walks over S + 1 days (one market factor), as a price history."""
    days = S + 1
    returns = 0.01 * rng.standard_normal((days, 1)) + 0.015 * rng.standard_normal((days, N))
    prices = 50.0 * np.exp(np.cumsum(returns, axis=0))
    dates = np.datetime64("2020-01-01") + np.arange(days)
    return History(dates, [f"S{i:03d}" for i in range(N)], prices)


def _s(values) -> np.ndarray:
    return np.array(values, dtype=object)


def refdata_batches(history: History, accounts: list[str], rng) -> list[tuple[str, dict]]:
    syms = history.syms
    n = len(syms)
    nan = np.full(n, math.nan)
    inst = {"time": np.full(n, T0), "sym": _s(syms), "assetclass": _s(["equity"] * n), "ccy": _s(["USD"] * n),
            "multiplier": np.ones(n), "sector": _s(["tech"] * n), "ccp": _s(["B"] * n), "model": _s(["var"] * n),
            "underlying": _s([""] * n), "expiry": np.full(n, np.datetime64("NaT"), "datetime64[D]"), "strike": nan,
            "putcall": _s([""] * n), "adv": nan}
    a = len(accounts)
    acct = {"time": np.full(a, T0), "sym": _s(accounts), "desk": _s(["D"] * a), "ccp": _s(["B"] * a),
            "model": _s(["var"] * a), "ccy": _s(["USD"] * a), "collateral": np.full(a, 1e7), "buffer": np.full(a, 5e7),
            "threshold": np.full(a, 1e12), "callpct": np.full(a, 0.5), "imjump": np.full(a, 0.25),
            "imjumpmins": np.full(a, 15.0)}
    last = history.prices[-1]
    pos = {"time": np.full(a * n, T0), "sym": _s(syms * a), "account": _s([x for x in accounts for _ in syms]),
           "qty": np.round(rng.normal(0, 2e4, a * n)), "price": np.tile(last, a)}
    quotes = {"time": np.full(n, T0), "sym": _s(syms), "bid": nan, "ask": nan, "price": last.copy(), "size": nan,
              "vol": nan, "src": _s(["b"] * n)}
    return [("instrument", inst), ("account", acct), ("position", pos), ("quote", quotes)]


def engine_for(history: History, accounts: list[str], rng) -> MarginEngine:
    cfg = parse_config({"models": {"hs": {"kind": "historical", "lookback_days": S, "horizon_days": 1}},
                        "engine": {"default_models": ["hs"]}})
    engine = MarginEngine(cfg, history)
    for seq, (table, batch) in enumerate(refdata_batches(history, accounts, rng), 1):
        engine.apply(table, batch, seq)
    return engine


def one_fill(sym: str, account: str, qty: float, price: float) -> dict:
    return {"time": np.array([T0]), "sym": _s([sym]), "account": _s([account]), "qty": np.array([qty]),
            "price": np.array([price]), "execid": _s(["E"]), "orderid": _s(["O"]), "exectype": _s(["F"]),
            "refexecid": _s([""]), "session": _s(["S"]), "status": _s(["ok"])}


def one_quote(sym: str, price: float) -> dict:
    nan = np.array([math.nan])
    return {"time": np.array([T0]), "sym": _s([sym]), "bid": nan, "ask": nan, "price": np.array([price]),
            "size": nan, "vol": nan, "src": _s(["b"])}


def numpy_full(values: np.ndarray, shocks: np.ndarray, k: int) -> tuple[float, float]:
    """Plain numpy full recompute: P&L of every scenario, VaR and ES by partition."""
    losses = -(values @ shocks)
    worst = np.partition(losses, losses.size - k)[losses.size - k:]
    return float(worst.min()), float(worst.mean())


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i
    return x


def fixed_work_steps(target_us: float) -> int:
    """The number of `_spin` steps that takes ~target_us at the median."""
    n = 1000
    for _ in range(3):                  # the cost per step depends a little on n: size it in steps
        n = max(1, round(n * target_us / float(np.percentile(latencies_us(lambda e, n=n: _spin(n), 1000), 50))))
    return n


def fixed_work_us(target_us: float, events: int) -> np.ndarray:
    """Latencies of the same pure-Python work, sized to take ~target_us at the median: what this host
    adds to a computation of that length (its p99 over its p50) whatever the computation is."""
    n = fixed_work_steps(target_us)
    return latencies_us(lambda e: _spin(n), events)


def host_gaps(seconds: float = 1.0, gap_us: float = 5.0) -> tuple[float, float, float]:
    """(gaps per second, their median length in us, the share of time they take) that a loop reading
    the clock sees: the moments this host gives the CPU to something else."""
    clock = time.perf_counter_ns
    gaps = []
    prev = start = clock()
    end = start + int(seconds * 1e9)
    while prev < end:
        now = clock()
        if now - prev > gap_us * 1e3:
            gaps.append(now - prev)
        prev = now
    lost = np.array(gaps, dtype=np.float64) / 1e3
    elapsed = (prev - start) / 1e3
    return len(lost) / (elapsed / 1e6), float(np.median(lost)) if len(lost) else 0.0, float(lost.sum() / elapsed)


def speed_phases(paths: dict, seconds: float = 6.0, window: float = 0.25) -> tuple[list[tuple], float]:
    """Runs `paths` (name -> step(e)) call by call in turn for `seconds`; per `window` seconds each
    one's p50. Returns (name, the fastest window's p50, the median window's, the slowest window's,
    the share of windows over 1.5x the fastest) per path, and the share of windows over 1.5x the
    fastest for every path at once (all slowing together: the machine)."""
    steps = list(paths.values())
    clock = time.perf_counter_ns
    windows = []
    e = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lat: list[list[int]] = [[] for _ in steps]
        close = time.monotonic() + window
        while time.monotonic() < close:
            for step, out in zip(steps, lat):
                t0 = clock()
                step(e)
                out.append(clock() - t0)
            e += 1
        windows.append([np.percentile(out, 50) / 1e3 for out in lat])
    p50s = np.array(windows)
    slow = p50s > 1.5 * p50s.min(axis=0)
    return ([(name, p50s[:, i].min(), float(np.median(p50s[:, i])), p50s[:, i].max(), float(slow[:, i].mean()))
             for i, name in enumerate(paths)], float(slow.all(axis=1).mean()))


def in_process(rng) -> tuple[list[tuple], list[tuple]]:
    history = synthetic_history(rng)
    engine = engine_for(history, ["ACC"], rng)
    model = engine.models["hs"]
    assert model.shocks.shape == (N, S), model.shocks.shape
    engine.margin("ACC")
    syms = history.syms
    picks = rng.integers(0, N, EVENTS)
    qtys = np.round(rng.normal(0, 1e3, EVENTS))
    qtys[qtys == 0] = 1.0
    fills = [one_fill(syms[i], "ACC", float(q), float(engine.book.mark(syms[i]))) for i, q in zip(picks, qtys)]
    quotes = [one_quote(syms[i], float(engine.book.mark(syms[i]) * math.exp(0.001 * z)))
              for i, z in zip(picks, rng.standard_normal(EVENTS))]
    state = {"seq": 10}

    def fill(e):
        state["seq"] += 1
        engine.apply("fill", fills[e], state["seq"])
        for account in engine.take_dirty():
            engine.margin(account)

    def tick(e):
        state["seq"] += 1
        engine.apply("quote", quotes[e], state["seq"])
        for account in engine.take_dirty():
            engine.margin(account)

    whatif_trades = [{"sym": [syms[i]], "qty": [float(q)]} for i, q in zip(picks, qtys)]

    def whatif(e):
        what_if(engine, "ACC", whatif_trades[e], stress="")

    def whatif_bare(e):
        what_if(engine, "ACC", whatif_trades[e], stress="", top=0)

    before = BeforeCache()

    def whatif_warm(e):
        what_if(engine, "ACC", whatif_trades[e], stress="", cache=before)

    def whatif_warm_bare(e):
        what_if(engine, "ACC", whatif_trades[e], stress="", top=0, cache=before)

    live = engine.account_risk("ACC").models["hs"]
    columns = np.array([model.index[syms[i]] for i in picks], dtype=np.int64)
    olds = live.values[columns]
    news = olds + qtys * np.array([engine.book.mark(syms[i]) for i in picks])

    def kernel_floor(e):
        kernels.tail_measures(live.pnl, live.hi, live.lo, model.shocks, columns[e:e + 1], olds[e:e + 1],
                              news[e:e + 1], live.values, model.scenario_shocks, model.k, 1.0, False, 5)

    values = live.values.copy()
    prices = np.array([engine.book.mark(s) for s in syms])

    def numpy_fill(e):
        values[picks[e]] += qtys[e] * prices[picks[e]]
        numpy_full(values, model.shocks, model.k)

    results = [("fill -> margin row (engine, incremental)", latencies_us(fill, EVENTS)),
               ("tick -> margin row (engine, incremental)", latencies_us(tick, EVENTS)),
               ("what-if, 1 trade: before/after/delta (engine, cold)", latencies_us(whatif_bare, max(EVENTS // 4, 500))),
               ("what-if, 1 trade: before/after/delta + top-5 drivers (engine, cold)",
                latencies_us(whatif, max(EVENTS // 4, 500))),
               ("what-if, 1 trade: before/after/delta (engine, warm)", latencies_us(whatif_warm_bare, max(EVENTS // 4, 500))),
               ("what-if, 1 trade: before/after/delta + top-5 drivers (engine, warm)",
                latencies_us(whatif_warm, max(EVENTS // 4, 500))),
               ("what-if floor: its one kernel call alone (kernels.tail_measures, the trade pending)",
                latencies_us(kernel_floor, max(EVENTS // 4, 500))),
               ("fill -> VaR/ES, plain numpy full recompute", latencies_us(numpy_fill, max(EVENTS // 4, 500)))]
    assert engine.check_drift() < 1e-9
    warm = float(np.percentile(results[5][1], 50))
    for target, what in ((10.0, "10 us"), (20.0, "20 us"), (30.0, "30 us"), (warm, "the warm what-if's")):
        results.append((f"host floor: the same fixed Python work every call, p50 sized to {what}",
                        fixed_work_us(target, max(EVENTS // 4, 500))))
    rows = [(name, len(t), np.percentile(t, 50), np.percentile(t, 99)) for name, t in results]
    spin = fixed_work_steps(20.0)
    events = len(whatif_trades)
    phases = speed_phases({"what-if + top-5 drivers (warm)": lambda e: whatif_warm(e % events),
                           "its kernel call alone": lambda e: kernel_floor(e % events),
                           "fixed Python work (20 us alone)": lambda e: _spin(spin)})
    accounts = [f"A{i:04d}" for i in range(ACCOUNTS_FULL)]
    big = engine_for(history, accounts, rng)
    t0 = time.perf_counter()
    for a in accounts:
        big.margin(a)
    full = time.perf_counter() - t0
    rows.append((f"start-up full revaluation, {ACCOUNTS_FULL} accounts x {N} positions (engine, total)", 1,
                 full * 1e6, full * 1e6))
    return rows, phases


def _until_row(sub, arrivals: list[int], received: int) -> int:
    deadline = time.monotonic() + 10
    while len(arrivals) == received and time.monotonic() < deadline:
        sub.poll(1)
    if len(arrivals) == received:
        raise RuntimeError("no margin row within 10 s of a fill")
    return arrivals[received]


def end_to_end() -> list[tuple]:
    """A fill in -> calc (process) -> its margin row at a subscriber, one fill at a time: through the
    FIX acceptor (bench/fixwire.py's initiator in this process -> feedhandlers.fix -> tickerplant), and
    published straight into the tickerplant."""
    from bench.bench_fix import FeedhandlerProcess
    from bench.fixwire import WireInitiator, body_of
    from bench.harness import TickerplantProcess, free_endpoint, wait_for
    from common.rpc import rpc_answer
    from feedhandlers.omsim.orders import OrderFlow
    from feedhandlers.refdata.loader import load_refdata
    from tickerplant.client import Publisher, Subscriber

    tp = TickerplantProcess("--durability", "group")
    query = free_endpoint()
    calc = fh = oms = None
    try:
        publisher = Publisher("bench.refdata", endpoint=tp.ingest)
        ref = load_refdata()
        for table, batch in ref.items():
            if len(batch["sym"]):
                publisher.publish_sync(table, batch)
        calc = subprocess.Popen([sys.executable, "-m", "calc", "--control", tp.control, "--ingest", tp.ingest,
                                 "--query", query, "--log-level", "WARNING"], cwd=REPO)
        wait_for(lambda: rpc_answer(query), "calc", timeout=60)
        arrivals: list[int] = []
        sub = Subscriber("bench.treasury", control=tp.control, tables=["margin"],
                         on_batch=lambda t, cols, seq: arrivals.append(time.perf_counter_ns()))
        sub.start()
        fh = FeedhandlerProcess(tp, "sync")
        oms = WireInitiator("127.0.0.1", fh.port)
        oms.wait_logon(60)
        # fills that always move a margin row: cash instruments (with price history) in VaR accounts
        flow = OrderFlow.from_refdata(ref, assetclasses=("equity", "etf"), cancel_pct=0, correct_pct=0, seed=1)
        fix_lat, direct_lat = [], []
        for _ in range(E2E_FILLS):
            received = len(arrivals)
            t0 = time.perf_counter_ns()
            oms.send([body_of(flow.next_message())])
            fix_lat.append((_until_row(sub, arrivals, received) - t0) / 1e3)
        for i in range(E2E_FILLS):
            batch = one_fill("AMD", "FUND1", float(100 + i % 7) * (1 if i % 2 else -1), 9.8)
            del batch["time"]
            received = len(arrivals)
            t0 = time.perf_counter_ns()
            publisher.publish("fill", batch)
            direct_lat.append((_until_row(sub, arrivals, received) - t0) / 1e3)
            publisher.poll(0)
        publisher.flush()
        publisher.close()
        sub.close()
        return [(name, len(lat), np.percentile(lat, 50), np.percentile(lat, 99)) for name, lat in
                (("FIX fill -> feedhandlers.fix -> tickerplant -> calc -> margin row at a subscriber", fix_lat),
                 ("fill published straight into the tickerplant -> calc -> margin row at a subscriber", direct_lat))]
    finally:
        if oms is not None:
            oms.close()
        if fh is not None:
            fh.close()
        if calc is not None:
            calc.terminate()
            calc.wait(10)
        tp.close()


def main() -> None:
    rng = np.random.default_rng(3)
    rows, phases = in_process(rng)
    rows += end_to_end()
    print(f"calc engine latency ({N} positions, {S} scenarios, 99%; the machine is shared, figures indicative)")
    print(f"{'path':<86} {'events':>7} {'p50 us':>10} {'p99 us':>10}")
    for name, n, p50, p99 in rows:
        print(f"{name:<86} {n:>7} {p50:>10.1f} {p99:>10.1f}")
    per_s, median, share = host_gaps()
    print(f"host interruptions: {per_s:,.0f} gaps of over 5 us per second, median {median:.1f} us, "
          f"{share:.1%} of the time")
    print("host speed phases: p50 per quarter second of each path, run call by call in turn")
    print(f"{'path':<40} {'fastest':>9} {'median':>9} {'slowest':>9} {'windows over 1.5x the fastest':>31}")
    paths, all_slow = phases
    for name, fastest, median_p50, slowest, slow in paths:
        print(f"{name:<40} {fastest:>9.1f} {median_p50:>9.1f} {slowest:>9.1f} {slow:>31.0%}")
    print(f"windows over 1.5x the fastest for every path at once: {all_slow:.0%}")
    print("targets: fill p99 <= 100 us, what-if <= 50 us, end to end (FIX fill in) p99 <= 10 ms")


if __name__ == "__main__":
    main()
