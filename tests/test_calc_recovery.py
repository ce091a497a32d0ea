"""calc as a real process against a real tickerplant: kill -9 and restart rebuild exactly the state
(the rows after a restart equal those of an uninterrupted run) and nothing is published twice;
what changed while calc was down comes out as one row per account and model, equal to the
uninterrupted run's final row. A burst of ticks ends in rows of the final state (conflation never
leaves a stale row). The RPC ops over ZeroMQ."""
import copy
import math
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TickerplantProcess, rpc_answer, wait_until

from common.history import load_history
from common.rpc import RpcClient, RpcError
from feedhandlers.refdata.loader import load_refdata
from tickerplant.client import Publisher, Subscriber

COMPARED = ("sym", "model", "im", "vm", "requirement", "collateral", "excess", "call", "var", "es")


def calc_config_file(tmp_path: Path, repo_root: Path) -> Path:
    """config/calc.toml with the periodic stress check off (it runs on event time, which differs
    between two runs); the stress still runs with every alert."""
    text = (repo_root / "config" / "calc.toml").read_text().replace("stress_interval_s = 1.0", "stress_interval_s = 1e9")
    path = tmp_path / "calc.toml"
    path.write_text(text)
    return path


class Stack:
    """A tickerplant and (re)startable calc on free ports, plus a publisher standing in for the feeds."""

    def __init__(self, spawn, free_port, folder: Path, config: Path):
        self.spawn, self.config = spawn, config
        folder.mkdir()
        tp = TickerplantProcess(spawn, folder, "--log-level", "WARNING").start()
        self.ingest, self.control, self.query = tp.ingest, tp.control, f"tcp://127.0.0.1:{free_port()}"
        self.publisher = Publisher("test.feed", endpoint=self.ingest, timeout=10.0)
        self.calc = None

    def spawn_calc(self):
        self.calc = self.spawn("calc", "--control", self.control, "--ingest", self.ingest, "--query", self.query,
                               "--config", self.config, "--log-level", "WARNING")

    def start_calc(self):
        self.spawn_calc()
        return wait_until(lambda: (s := rpc_answer(self.query, "status")) and not s["pending"], 60,
                          what="calc ready")

    def kill_calc(self):
        self.calc.send_signal(signal.SIGKILL)
        self.calc.wait(10)
        self.calc = None

    def send(self, table, batch):
        """Publishes durably; with calc up, waits until calc applied it and its rows are durable."""
        seq = self.publisher.publish_sync(table, batch, timeout=10.0)
        if self.calc is not None:
            wait_until(lambda: (s := rpc_answer(self.query, "status")) and s["seq"] >= seq and not s["pending"],
                       30, what=f"calc applying seq {seq}")
        return seq

    def rows(self, table):
        out = []

        def collect(t, cols, seq):
            out.extend(dict(zip(cols, vals)) | {"_seq": seq} for vals in zip(*(cols[c].tolist() for c in cols)))

        sub = Subscriber(f"test.read.{table}", control=self.control, tables=[table], on_batch=collect)
        sub.start()
        sub.close()
        return out


def fill(sym, account, qty, price, execid):
    s = lambda v: np.array([v], dtype=object)
    return {"sym": s(sym), "account": s(account), "qty": np.array([qty], float), "price": np.array([price], float),
            "execid": s(execid), "orderid": s("O" + execid), "exectype": s("F"), "refexecid": s(""),
            "session": s("OMS"), "status": s("ok")}


def quote(sym, price, vol=math.nan):
    nan = np.array([math.nan])
    return {"sym": np.array([sym], dtype=object), "bid": nan, "ask": nan, "price": np.array([price]), "size": nan,
            "vol": np.array([vol]), "src": np.array(["test"], dtype=object)}


PHASE_A = [("fill", fill("AMD", "FUND1", 200_000, 9.9, "A1")), ("quote", quote("AMD", 9.6)),
           ("fill", fill("SPY", "FUND3", -10_000, 265.0, "A2")), ("quote", quote("AAPL", 170.0, 0.45))]
PHASE_B = [("fill", fill("JPM", "FUND2", 20_000, 110.0, "B1")), ("quote", quote("JPM", 108.0)),
           ("fill", fill("AMD", "FUND1", -200_000, 9.9, "A1-cancel"))]
PHASE_C = [("quote", quote("AMD", 8.4, 1.2)), ("quote", quote("AAPL", 160.0)),
           ("fill", fill("SPY", "FUND1", -40_000, 262.0, "C1")), ("quote", quote("SPY", 258.0))]


def values(rows):
    """The compared columns of each row; NaN (a SPAN account's var / es) as None so equal rows compare equal."""
    return [tuple(None if isinstance(v, float) and math.isnan(v) else v for v in (r[c] for c in COMPARED))
            for r in rows]


def test_kill_9_and_restart_gives_the_rows_of_an_uninterrupted_run(spawn, free_port, tmp_path, repo_root):
    config = calc_config_file(tmp_path, repo_root)
    refdata = list(load_refdata(history=load_history()).items())
    runs = {}
    for name in ("uninterrupted", "killed"):
        stack = Stack(spawn, free_port, tmp_path / name, config)
        for table, batch in refdata:
            if len(batch["sym"]):
                stack.send(table, batch)
        stack.start_calc()
        for table, batch in PHASE_A:
            stack.send(table, batch)
        if name == "killed":                                  # restart with nothing missed
            stack.kill_calc()
            stack.start_calc()
        for table, batch in PHASE_B:
            stack.send(table, batch)
        if name == "killed":                                  # down while phase C happens
            stack.kill_calc()
        first_c, *_, end = [stack.send(table, batch) for table, batch in PHASE_C]
        if name == "killed":
            stack.start_calc()
            assert rpc_answer(stack.query, "status")["seq"] == end
        runs[name] = {"margin": stack.rows("margin"), "alert": stack.rows("alert"), "first_c": first_c}
        assert rpc_answer(stack.query, "accounts")["accounts"]["sym"] == ["FUND1", "FUND2", "FUND3", "FUTS1"]
    ref, got = runs["uninterrupted"], runs["killed"]
    assert ref["first_c"] == got["first_c"]
    until_b = lambda rows: [r for r in rows if r["_seq"] < ref["first_c"]]
    # up to the end of phase B calc was live in both runs: the very same rows, seq included
    assert values(until_b(got["margin"])) == values(until_b(ref["margin"]))
    assert [r["seq"] for r in until_b(got["margin"])] == [r["seq"] for r in until_b(ref["margin"])]
    assert [(a["sym"], a["kind"], a["severity"], a["text"]) for a in until_b(got["alert"])] == \
           [(a["sym"], a["kind"], a["severity"], a["text"]) for a in until_b(ref["alert"])]
    # phase C while calc was down: one conflated row per account and model, equal to the final rows
    after = [r for r in got["margin"] if r["_seq"] > ref["first_c"]]
    final = {(r["sym"], r["model"]): r for r in ref["margin"]}
    at_b = {(r["sym"], r["model"]): r for r in until_b(ref["margin"])}
    changed = sorted(k for k in final if values([final[k]]) != values([at_b[k]]))
    assert sorted((r["sym"], r["model"]) for r in after) == changed
    assert {k[0] for k in changed} == {"FUND1", "FUND3"}           # FUND2 holds nothing that moved in C
    assert values(after) == values([final[(r["sym"], r["model"])] for r in after])     # bit for bit
    # nothing published twice: no (account, model) ever repeats its previous numbers
    last = {}
    for r in got["margin"]:
        key = (r["sym"], r["model"])
        assert values([r]) != values([last[key]]) if key in last else True
        last[key] = r


def test_rpc_ops_over_zeromq(spawn, free_port, tmp_path, repo_root):
    stack = Stack(spawn, free_port, tmp_path / "rpc", calc_config_file(tmp_path, repo_root))
    for table, batch in load_refdata(history=load_history()).items():
        if len(batch["sym"]):
            stack.send(table, batch)
    stack.start_calc()
    client = RpcClient(stack.query, timeout=10.0)
    margin = client.call("margin", accounts=["FUND1"])["margin"]
    assert list(margin["sym"]) == ["FUND1", "FUND1"] and list(margin["model"]) == ["fhs", "param"]
    positions = client.call("positions", account="FUND1")["positions"]
    assert positions["sym"][:2] == ["AAPL", "AMD"] and positions["qty"][1] == 4_000_000
    drivers = client.call("drivers", account="FUND1")["drivers"]
    assert drivers["sym"][0] == "AMD" and sum(drivers["contribution"]) == pytest.approx(margin["im"][0], rel=1e-9)
    stress = client.call("stress", account="FUND1", scenario="tech_crash")
    assert stress["loss"] > stress["shock_loss"] > 0
    whatif = client.call("whatif", account="FUND1", trades={"sym": ["SPY"], "qty": [-50_000], "price": [math.nan]})
    assert whatif["after"]["im"] < whatif["before"]["im"]
    assert client.call("margin", accounts=["FUND1"])["margin"]["im"][0] == margin["im"][0]   # unchanged
    assert "tech_crash" in client.call("scenarios")["scenarios"]
    with pytest.raises(RpcError, match="unknown account NOBODY"):
        client.call("positions", account="NOBODY")
    with pytest.raises(RpcError, match="missing argument: trades"):
        client.call("whatif", account="FUND1")
    client.close()


def test_a_burst_of_ticks_ends_in_rows_of_the_final_state(spawn, free_port, tmp_path, repo_root):
    stack = Stack(spawn, free_port, tmp_path / "burst", calc_config_file(tmp_path, repo_root))
    for table, batch in load_refdata(history=load_history()).items():
        if len(batch["sym"]):
            stack.send(table, batch)
    stack.start_calc()
    rng = np.random.default_rng(5)
    for i in range(300):                                   # as fast as the publisher goes, no waiting
        stack.publisher.publish("quote", quote(["AMD", "AAPL", "SPY"][i % 3], 10.0 * math.exp(0.01 * rng.standard_normal())
                                               if i % 3 == 0 else (170.0 if i % 3 == 1 else 260.0) + i * 0.01))
    stack.publisher.flush(timeout=30)
    last = stack.publisher.acked_seq
    wait_until(lambda: (s := rpc_answer(stack.query, "status")) and s["seq"] >= last and not s["pending"], 60,
               what="calc catching up with the burst")
    rows = stack.rows("margin")
    final = {(r["sym"], r["model"]): r for r in rows}
    client = RpcClient(stack.query, timeout=10.0)
    now = client.call("margin")["margin"]                  # the engine's state now
    client.close()
    for i, (sym, model) in enumerate(zip(now["sym"], now["model"])):
        for c in ("im", "vm", "requirement", "call", "var", "es"):
            assert final[(sym, model)][c] == pytest.approx(now[c][i], rel=1e-9, nan_ok=True)   # span: var, es null


def test_an_alert_lost_with_a_kill_goes_out_at_restart_and_rows_are_not_repeated(spawn, free_port, tmp_path,
                                                                                  repo_root):
    """The journal holds calc's margin rows but not the alert they raised (calc was killed between
    the two): the restarted calc publishes the alert once and no margin row."""
    from calc.config import load_config
    from calc.engine import MarginEngine
    from calc.server import _rows_to_batch
    from common.schema import load_schemas

    config = calc_config_file(tmp_path, repo_root)
    stack = Stack(spawn, free_port, tmp_path / "lost", config)
    engine = MarginEngine(load_config(config), load_history())
    batches = [b for b in load_refdata(history=load_history()).items() if len(b[1]["sym"])]
    batches.append(("fill", fill("AMD", "FUND1", 1_500_000, 12.5, "BIG1")))    # paid up: vm owed, requirement > 12m
    for table, batch in batches:
        seq = stack.send(table, batch)
        engine.apply(table, {"time": np.array([np.datetime64(0, "ns")] * len(batch["sym"])), **batch}, seq)
    rows = [r | {"time": 0, "seq": engine.seq} for a in sorted(engine.book.accounts) for r in engine.margin(a)]
    assert rows[0]["sym"] == "FUND1" and rows[0]["requirement"] > 12_000_000
    as_calc = Publisher("calc", endpoint=stack.ingest, timeout=10.0)        # what calc had published
    as_calc.publish_sync("margin", _rows_to_batch(rows, load_schemas()["margin"]), timeout=10.0)
    as_calc.close()
    stack.start_calc()
    wait_until(lambda: any(a["kind"] == "threshold" for a in stack.rows("alert")), 30, what="the threshold alert")
    alerts = [(a["sym"], a["kind"], a["severity"]) for a in stack.rows("alert")]
    assert alerts.count(("FUND1", "threshold", "warn")) == 1
    assert len(stack.rows("margin")) == len(rows)                          # nothing republished


# ---- property: any kill point gives the rows of an uninterrupted run, bit for bit -------------------

def day_of_events(refdata: dict, rng: np.random.Generator, n: int) -> list[tuple[str, dict]]:
    """A random trading day over the demo book: fills (stocks and SPY for the VaR accounts, futures and
    options for the SPAN account), cancels of earlier fills, quotes (some with a vol), settlements,
    collateral movements and a late start-of-day position row (a full revaluation mid-stream)."""
    inst = refdata["instrument"]
    kinds = dict(zip(inst["sym"].tolist(), inst["assetclass"].tolist()))
    stocks = [s for s, k in kinds.items() if k in ("equity", "etf")]
    derivs = [s for s, k in kinds.items() if k in ("future", "option")]
    futures = [s for s, k in kinds.items() if k == "future"]
    price = {s: float(p) for s, p in zip(refdata["settle"]["sym"].tolist(), refdata["settle"]["price"].tolist())}
    price.update({s: 100.0 for s in stocks if s not in price})
    booked, out = [], []
    for i in range(n):
        u = rng.random()
        if u < 0.35:
            account = str(rng.choice(["FUND1", "FUND2", "FUND3", "FUTS1"]))
            sym = str(rng.choice(derivs if account == "FUTS1" else stocks))
            qty = float(rng.integers(1, 50) if account == "FUTS1" else rng.integers(-30_000, 30_000) or 1)
            px = round(price[sym] * (1 + 0.002 * rng.standard_normal()), 2)
            booked.append((sym, account, qty, px, f"E{i}"))
            out.append(("fill", fill(sym, account, qty, px, f"E{i}")))
        elif u < 0.42 and booked:                               # a cancel: the reversal of an earlier fill
            sym, account, qty, px, execid = booked.pop(int(rng.integers(len(booked))))
            out.append(("fill", fill(sym, account, -qty, px, execid + "-cancel")))
        elif u < 0.85:
            sym = str(rng.choice(stocks + futures))
            price[sym] *= float(np.exp(0.01 * rng.standard_normal()))
            out.append(("quote", quote(sym, round(price[sym], 4), 0.2 + 0.4 * rng.random() if rng.random() < 0.3
                                       else math.nan)))
        elif u < 0.9:
            sym = str(rng.choice(stocks + futures))
            out.append(("settle", {"sym": np.array([sym], dtype=object), "price": np.array([round(price[sym], 2)]),
                                   "date": np.array([np.datetime64("2026-12-04")])}))
        elif u < 0.96:
            out.append(("collateral", {"sym": np.array([str(rng.choice(["FUND1", "FUND2", "FUTS1"]))], dtype=object),
                                       "amount": np.array([float(rng.integers(-500_000, 500_000))]),
                                       "kind": np.array(["cash"], dtype=object),
                                       "ref": np.array([f"W{i}"], dtype=object)}))
        else:
            sym = str(rng.choice(stocks))
            out.append(("position", {"sym": np.array([sym], dtype=object), "account": np.array(["FUND2"], dtype=object),
                                     "qty": np.array([float(rng.integers(1, 100) * 1000)]),
                                     "price": np.array([round(price[sym], 2)])}))
    return out


def stamped(batch: dict, i: int) -> dict:
    n = len(next(iter(batch.values())))
    return {"time": np.array([np.datetime64(1_700_000_000_000_000_000 + i * 1_000_000, "ns")] * n), **batch}


def engine_rows(engine, accounts) -> list:
    """Every account's margin rows and positions, NaN as None so that equal rows compare equal."""
    return [(values(engine.margin(a)), engine.positions(a)) for a in accounts]


def test_recovery_at_any_of_25_random_kill_points_gives_the_uninterrupted_rows_bit_for_bit(tmp_path, repo_root):
    """In process, the engine as calc runs it: an uninterrupted engine evaluated after every event
    against engines "killed" at 25 random points (a new engine replays the events before the point
    with no evaluation, as calc's start-up does, then goes on evaluating at random moments, as a
    conflating live calc does): every evaluation equals the uninterrupted one at the same event, to
    the last bit."""
    from calc.config import load_config
    from calc.engine import MarginEngine
    from calc.registry import build_models
    from calc.universe import Universe
    config, history = load_config(calc_config_file(tmp_path, repo_root)), load_history()
    refdata = {t: b for t, b in load_refdata(history=history).items() if len(b["sym"])}
    rng = np.random.default_rng(2026_12_05)
    events = [*refdata.items(), *day_of_events(refdata, rng, 400)]
    universe = Universe(history.syms)
    pristine = build_models(config, history, universe)        # built once; each engine gets its own copy
    reference = MarginEngine(config, history, *copy.deepcopy((pristine, universe)))
    expected = []
    for i, (table, batch) in enumerate(events):
        reference.apply(table, stamped(batch, i), i + 1)
        expected.append(engine_rows(reference, sorted(reference.book.accounts)))
    accounts = sorted(reference.book.accounts)
    assert len(accounts) == 4 and all(margin and positions["sym"] for margin, positions in expected[-1])
    first_live = len(refdata)
    kill_points = sorted(rng.choice(np.arange(first_live, len(events)), 25, replace=False).tolist())
    for point in kill_points:
        restarted = MarginEngine(config, history, *copy.deepcopy((pristine, universe)))
        for i, (table, batch) in enumerate(events[:point]):     # the replay at start-up
            restarted.apply(table, stamped(batch, i), i + 1)
        assert engine_rows(restarted, accounts) == expected[point - 1], f"replayed up to {point}"
        checked = 0
        for i in range(point, len(events)):                     # then live, publishing when it gets to
            table, batch = events[i]
            restarted.apply(table, stamped(batch, i), i + 1)
            if rng.random() < 0.3 or i == len(events) - 1:
                assert engine_rows(restarted, accounts) == expected[i], f"killed at {point}, event {i}"
                checked += 1
        assert checked >= 1


def test_calc_killed_at_20_random_points_publishes_only_rows_an_uninterrupted_calc_computes(spawn, free_port, tmp_path,
                                                                                           repo_root):
    """A real calc process killed with SIGKILL at 20 random moments (while it applies events, while
    it replays at start-up, or started again only some events later) during a stream of fills,
    cancels, quotes, settlements and collateral: every margin row it ever published equals, bit for
    bit, what an uninterrupted engine computes from the journal's inputs up to that row's seq, and
    the last rows equal the uninterrupted engine's final ones."""
    from calc.config import load_config
    from calc.engine import MarginEngine
    config_path = calc_config_file(tmp_path, repo_root)
    history = load_history()
    refdata = {t: b for t, b in load_refdata(history=history).items() if len(b["sym"])}
    rng = np.random.default_rng(20)
    events = day_of_events(refdata, rng, 160)
    stack = Stack(spawn, free_port, tmp_path / "kills", config_path)
    for table, batch in refdata.items():
        stack.send(table, batch)
    stack.start_calc()
    kills = set(rng.choice(np.arange(len(events)), 20, replace=False).tolist())
    down_for = 0
    for i, (table, batch) in enumerate(events):
        stack.publisher.publish_sync(table, batch, timeout=10.0)     # not waiting for calc
        time.sleep(0.05)
        if stack.calc is None and down_for == 0:
            if rng.random() < 0.5:                                    # up and publishing before the next kill
                stack.start_calc()
            else:                                                     # or killed again while it replays
                stack.spawn_calc()
        down_for = max(0, down_for - 1)
        if i in kills:
            if stack.calc is None:                                    # down already: start it to kill it
                stack.start_calc()
            time.sleep(float(rng.choice([0.0, 0.05, 0.5, 1.5])))       # in a drain, mid-replay or idle
            stack.kill_calc()
            down_for = int(rng.choice([0, 0, 3]))                      # back at once, or a few events later
    if stack.calc is None:
        stack.start_calc()
    last = stack.publisher.acked_seq
    wait_until(lambda: (s := rpc_answer(stack.query, "status")) and s["seq"] >= last and not s["pending"], 60,
               what="calc caught up")
    inputs, published = [], []
    sub = Subscriber("test.audit", control=stack.control, tables=[*MarginEngine.tables, "margin"],
                     on_batch=lambda t, cols, seq: (published if t == "margin" else inputs).append((seq, t, cols)))
    sub.start()
    sub.close()
    reference = MarginEngine(load_config(config_path), history)
    rows = [r for _, _, cols in published for r in (dict(zip(cols, vals)) for vals in
                                                     zip(*(cols[c].tolist() for c in cols)))]
    assert len({r["seq"] for r in rows}) >= 10
    pending = iter(inputs)
    nxt = next(pending, None)
    final = {}
    for seq in sorted({r["seq"] for r in rows}):
        while nxt is not None and nxt[0] <= seq:
            reference.apply(nxt[1], nxt[2], nxt[0])
            nxt = next(pending, None)
        expected = {(r["sym"], r["model"]): r for a in sorted(reference.book.accounts) for r in reference.margin(a)}
        for r in (r for r in rows if r["seq"] == seq):
            assert values([r]) == values([expected[(r["sym"], r["model"])]]), f"row at seq {seq}"
            final[(r["sym"], r["model"])] = r
    while nxt is not None:
        reference.apply(nxt[1], nxt[2], nxt[0])
        nxt = next(pending, None)
    for a in sorted(reference.book.accounts):
        for r in reference.margin(a):
            assert values([final[(a, r["model"])]]) == values([r])
