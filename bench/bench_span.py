"""SPAN benchmark: the Numba path of calc.span side by side with a plain numpy implementation.

- full: a 10,000-position portfolio (21 combined commodities of demo-style index futures and
  options, ~10,250 contracts): aggregate the 16-vectors, deltas, short options and NOV, then the
  requirement (scan, tiered intra spreads, spot, inter credit, SOM, NOV) - Numba kernels against
  numpy (np.add.at / bincount) with the spread logic in Python;
- per fill: one fill on the 10,000-position account and its new initial margin - `SpanAccount.fill`
  (O(16) state update + requirement kernel) against a numpy row update + the numpy requirement;
- what-if (initial margin before / after one trade, state untouched) and a futures price tick
  (risk arrays of the future and its options recomputed with Black-76, account state moved).

Latencies are per call from Python, p50 / p99. Both paths are checked to give the same margin.
Run: `.venv/bin/python -m bench.bench_span` (BENCH_QUICK=1: fewer events and repeats).
"""
from __future__ import annotations

import os
import time

import numpy as np

from bench.harness import latencies_us
from calc.span import SpanAccount, compile_params
from calc.span.compiled import CompiledParams, SpanState
from calc.span.demo import DEMO_PRODUCTS, DemoProduct, demo_params
from calc.span.kernels import CALL, INIT, PUT

QUICK = os.environ.get("BENCH_QUICK") == "1"
EVENTS = 2_000 if QUICK else 20_000
FULL_REPEATS = 5 if QUICK else 30
N_PRODUCTS, STRIKES_EACH_SIDE, N_POSITIONS = 21, 60, 10_000


def bench_params() -> CompiledParams:
    base = DEMO_PRODUCTS[0]
    products = [DemoProduct(f"{chr(65 + i // 10)}{i % 10}", f"INDEX {i}", base.cvf,
                            tuple(p * (1 + 0.05 * i) for p in base.prices), base.vol, base.price_scan,
                            base.vol_scan, base.strike_step, STRIKES_EACH_SIDE, base.som_rate,
                            "1" if i % 2 else "2", base.spread_rates, base.spot_rates)
                for i in range(N_PRODUCTS)]
    return compile_params(demo_params(products))


# ---- the plain numpy implementation ----------------------------------------------------------------

def numpy_state(p: CompiledParams, idx: np.ndarray, qty: np.ndarray) -> SpanState:
    n_cc = len(p.cc_codes)
    cc = p.contract_cc[idx]
    vec = np.zeros((n_cc, 16))
    np.add.at(vec, cc, qty[:, None] * p.risk[idx])
    short = np.maximum(-qty, 0.0)
    state = SpanState(n_cc, len(p.slot_cc))
    state.vec[:] = vec
    state.slot_delta[:] = np.bincount(p.contract_slot[idx], qty * p.delta[idx], len(p.slot_cc))
    state.short_calls[:] = np.bincount(cc, short * (p.kind[idx] == CALL), n_cc)
    state.short_puts[:] = np.bincount(cc, short * (p.kind[idx] == PUT), n_cc)
    state.nov[:] = np.bincount(cc, qty * p.option_value[idx], n_cc)
    return state


def _form(available, consume, legs):
    n_total = 0.0
    for direction in (1.0, -1.0):
        n = min(available(leg, direction * side) / ratio for leg, ratio, side in legs)
        if n > 1e-12:
            for leg, ratio, side in legs:
                consume(leg, direction * side, n * ratio)
            n_total += n
    return n_total


def numpy_requirement(p: CompiledParams, st: SpanState, held: np.ndarray) -> float:
    """Initial margin of the held combined commodities, same methodology as calc.span.kernels."""
    rem, used = st.slot_delta.copy(), np.zeros_like(st.slot_delta)
    scan = np.maximum(st.vec.max(axis=1), 0.0)
    intra, spot, net = np.zeros(len(scan)), np.zeros(len(scan)), np.zeros(len(scan))

    def tier_available(leg, sign):
        return max(sign * rem[leg[0]:leg[1]].sum(), 0.0)

    def tier_consume(leg, sign, amount):
        for s in range(leg[0], leg[1]):
            have = sign * rem[s]
            if amount <= 0:
                break
            if have > 0:
                take = min(have, amount)
                rem[s] -= sign * take
                used[s] += take
                amount -= take

    for c in range(len(scan)):
        for sp in range(p.intra_start[c], p.intra_start[c + 1]):
            legs = [((p.leg_lo[l], p.leg_hi[l]), p.leg_ratio[l], p.leg_side[l])
                    for l in range(p.intra_leg_start[sp], p.intra_leg_start[sp + 1])]
            intra[c] += _form(tier_available, tier_consume, legs) * p.intra_rate[sp]
        lo, hi = p.cc_slot_start[c], p.cc_slot_start[c + 1]
        spot[c] = (used[lo:hi] @ p.spot_spread_rate[lo:hi]) + (np.abs(rem[lo:hi]) @ p.spot_outright_rate[lo:hi])
        net[c] = rem[lo:hi].sum()
    active = st.vec.argmax(axis=1)
    paired = np.where(active < 14, active ^ 1, active)
    rows = np.arange(len(scan))
    price_risk = 0.5 * (st.vec[rows, active] + st.vec[rows, paired]) - 0.5 * (st.vec[:, 0] + st.vec[:, 1])
    wfpr = np.where((np.abs(net) > 1e-12) & (scan > 0), np.maximum(price_risk, 0.0) / np.maximum(np.abs(net), 1e-300), 0.0)
    left, inter = net.copy(), np.zeros(len(scan))

    def cc_available(c, sign):
        return max(sign * left[c], 0.0)

    def cc_consume(c, sign, amount):
        left[c] -= sign * amount

    for sp in range(len(p.inter_rate)):
        legs = [(p.inter_leg_cc[l], p.inter_leg_ratio[l], p.inter_leg_side[l])
                for l in range(p.inter_leg_start[sp], p.inter_leg_start[sp + 1])]
        n = _form(cc_available, cc_consume, legs)
        for c, ratio, _ in legs:
            inter[c] += n * ratio * wfpr[c] * p.inter_rate[sp]
    shorts = np.where(p.som_max_side, np.maximum(st.short_calls, st.short_puts), st.short_calls + st.short_puts)
    risk = np.maximum(scan + intra + spot - inter, p.som_rate * shorts)
    initial = np.maximum(risk - np.where(p.premium, st.nov, 0.0), 0.0) * p.init_ratio
    return float(initial[held].sum())


# ---- timing -------------------------------------------------------------------------------------



def row(name: str, numba_us: np.ndarray, numpy_us: np.ndarray, target: str) -> str:
    p50a, p99a, p50b, p99b = (float(np.percentile(a, q)) for a in (numba_us, numpy_us) for q in (50, 99))
    return f"{name:34}{p50a:>12.1f}{p99a:>12.1f}{p50b:>12.1f}{p99b:>12.1f}{p50b / p50a:>9.1f}x  {target}"


def main() -> None:
    t0 = time.perf_counter()
    p = bench_params()
    print(f"parameter set: {len(p.symbols)} contracts, {len(p.cc_codes)} combined commodities, "
          f"{len(p.intra_rate)} intra spreads, built in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(5)
    idx = rng.choice(len(p.symbols), N_POSITIONS, replace=False).astype(np.int64)
    qty = rng.choice([-20.0, -5.0, -1.0, 1.0, 2.0, 10.0], N_POSITIONS)
    acct = SpanAccount(p, "BENCH", positions=dict(zip((p.symbols[j] for j in idx), qty)))
    held = np.zeros(len(p.cc_codes), dtype=np.bool_)
    held[p.contract_cc[idx]] = True

    def full_numba(_):
        return float(p.breakdown(p.state_of(idx, qty))[held, INIT].sum())

    def full_numpy(_):
        return numpy_requirement(p, numpy_state(p, idx, qty), held)

    assert abs(full_numba(0) - full_numpy(0)) < 1e-6 * max(1.0, full_numba(0)), (full_numba(0), full_numpy(0))
    assert abs(full_numba(0) - acct.initial()) < 1e-6 * full_numba(0)

    fills = [(p.symbols[j], float(q)) for j, q in
             zip(rng.choice(idx, EVENTS + 200), rng.choice([-1.0, 1.0, 2.0], EVENTS + 200))]
    np_state, np_qty = numpy_state(p, idx, qty), dict(zip(idx.tolist(), qty.tolist()))

    def fill_numba(e):
        return acct.fill(*fills[e])

    def fill_numpy(e):
        sym, q = fills[e]
        j = p.index[sym]
        old = np_qty.get(j, 0.0)
        new = np_qty[j] = old + q
        c = p.contract_cc[j]
        np_state.vec[c] += q * p.risk[j]
        np_state.slot_delta[p.contract_slot[j]] += q * p.delta[j]
        np_state.nov[c] += q * p.option_value[j]
        short = max(-new, 0.0) - max(-old, 0.0)
        if p.kind[j] == CALL:
            np_state.short_calls[c] += short
        elif p.kind[j] == PUT:
            np_state.short_puts[c] += short
        return numpy_requirement(p, np_state, held)

    t_full_numba = latencies_us(full_numba, FULL_REPEATS)
    t_full_numpy = latencies_us(full_numpy, FULL_REPEATS)
    t_fill_numba = latencies_us(fill_numba, EVENTS)
    acct_check = acct.initial()
    t_fill_numpy = latencies_us(fill_numpy, EVENTS)
    assert abs(acct_check - numpy_requirement(p, np_state, held)) < 1e-6 * acct_check

    trades = [[(p.symbols[j], 5.0)] for j in rng.choice(idx, 1000)]
    def whatif(e):                       # as the engine's what-if does it: a copy of the state, the trade applied
        fork = acct.copy()
        for sym, q in trades[e % 1000]:
            fork.fill(sym, q)
        return fork.initial()

    t_whatif = latencies_us(whatif, EVENTS // 4)
    futures = [s for s, k in zip(p.symbols, p.kind) if k == 0]
    price = {s: p.price[p.index[s]] for s in futures}
    t_tick = latencies_us(lambda e: acct.reprice(futures[e % len(futures)],
                                                 price[futures[e % len(futures)]] * (1 + 0.001 * (e % 7 - 3))),
                          max(EVENTS // 20, 100))

    print(f"\nSPAN, {N_POSITIONS:,} positions, latency per call in microseconds (machine shared, figures indicative)")
    print(f"{'':34}{'numba p50':>12}{'numba p99':>12}{'numpy p50':>12}{'numpy p99':>12}{'speedup':>10}  target")
    print(row("full computation", t_full_numba, t_full_numpy, "<= 50,000 us"))
    print(row("per fill (state update + IM)", t_fill_numba, t_fill_numpy, "<= 20 us"))
    print(f"{'what-if one trade (IM before/after)':34}{np.percentile(t_whatif, 50):>12.1f}"
          f"{np.percentile(t_whatif, 99):>12.1f}")
    print(f"{'futures tick (Black-76 + state)':34}{np.percentile(t_tick, 50):>12.1f}{np.percentile(t_tick, 99):>12.1f}"
          f"   ({STRIKES_EACH_SIDE * 4 + 2} option arrays + 1 future repriced)")


if __name__ == "__main__":
    main()
