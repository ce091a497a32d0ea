"""Pure Numba kernels of the SPAN requirement over arrays (no Python objects).

The state of a portfolio is, per combined commodity c: vec[c, 16] (sum of qty x risk array),
short_calls[c], short_puts[c], nov[c] (net option value of premium-style options), and per
contract-month slot s: slot_delta[s] (sum of qty x composite delta x delta scaling factor), all
kept as exact sums of their terms (calc.exact) in one flat layout (calc.span.compiled.SpanState). A
fill changes one row of vec, one slot and the counts: O(16). `requirement` turns the state into the
breakdown per combined commodity.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from calc.kernels import split

# columns of the breakdown returned by `requirement`
SCAN, INTRA, SPOT, INTER, SOM, RISK, NOV, MAINT, INIT, ACTIVE, NET_DELTA = range(11)
N_OUT = 11
CALL, PUT = 1, 2


@njit(cache=True, inline="always")
def _move(value, hi, lo, at, old, new):
    """State entry `at` loses the term `old` and gains `new`, exactly (calc.exact)."""
    h0, l0 = split(old)
    h1, l1 = split(new)
    hi[at] = (hi[at] - h0) + h1
    lo[at] = (lo[at] - l0) + l1
    value[at] = hi[at] + lo[at]


@njit(cache=True, inline="always")
def _add(hi, lo, at, t):
    h, l = split(t)
    hi[at] += h
    lo[at] += l


@njit(cache=True)
def apply_change(j, q_old, q_new, risk, delta, contract_cc, contract_slot, kind, option_value, value, hi, lo,
                 n_cc, n_slots):
    """Position in contract j goes from q_old to q_new: its terms leave the state and the new ones
    enter it (the flat layout of `SpanState`), O(16)."""
    c = contract_cc[j]
    n_s = risk.shape[1]
    for k in range(n_s):
        _move(value, hi, lo, c * n_s + k, q_old * risk[j, k], q_new * risk[j, k])
    at = n_cc * n_s
    _move(value, hi, lo, at + contract_slot[j], q_old * delta[j], q_new * delta[j])
    at += n_slots
    if kind[j] == CALL:
        _move(value, hi, lo, at + c, max(-q_old, 0.0), max(-q_new, 0.0))
    elif kind[j] == PUT:
        _move(value, hi, lo, at + n_cc + c, max(-q_old, 0.0), max(-q_new, 0.0))
    _move(value, hi, lo, at + 2 * n_cc + c, q_old * option_value[j], q_new * option_value[j])


@njit(cache=True)
def aggregate(qty, idx, risk, delta, contract_cc, contract_slot, kind, option_value, value, hi, lo, n_cc, n_slots):
    """Add positions (qty[i] of contract idx[i]) into the state, in place: the terms `apply_change`
    would add from flat, summed once each, and the values read once at the end."""
    n_s = risk.shape[1]
    base = n_cc * n_s
    counts = base + n_slots
    for i in range(qty.shape[0]):
        j = idx[i]
        q = qty[i]
        c = contract_cc[j]
        for k in range(n_s):
            _add(hi, lo, c * n_s + k, q * risk[j, k])
        _add(hi, lo, base + contract_slot[j], q * delta[j])
        if kind[j] == CALL:
            _add(hi, lo, counts + c, max(-q, 0.0))
        elif kind[j] == PUT:
            _add(hi, lo, counts + n_cc + c, max(-q, 0.0))
        _add(hi, lo, counts + 2 * n_cc + c, q * option_value[j])
    for at in range(value.size):
        value[at] = hi[at] + lo[at]


@njit(cache=True)
def reprice(j, q, old_risk, old_delta, risk, delta, contract_cc, contract_slot, value, hi, lo, n_cc):
    """Contract j (held: q) got a new risk array and delta (old_risk, old_delta before): its terms
    in the state move from the old ones to the new, exactly."""
    c = contract_cc[j]
    n_s = risk.shape[1]
    for k in range(n_s):
        _move(value, hi, lo, c * n_s + k, q * old_risk[k], q * risk[j, k])
    _move(value, hi, lo, n_cc * n_s + contract_slot[j], q * old_delta, q * delta[j])


@njit(cache=True)
def _tier_available(rem, lo, hi, sign):
    net = 0.0
    for s in range(lo, hi):
        net += rem[s]
    return max(sign * net, 0.0)


@njit(cache=True)
def _consume(rem, used, lo, hi, sign, amount):
    """Take `amount` of delta of `sign` out of slots lo..hi (same-sign slots, earliest first)."""
    for s in range(lo, hi):
        if amount <= 0.0:
            break
        have = sign * rem[s]
        if have > 0.0:
            take = min(have, amount)
            rem[s] -= sign * take
            used[s] += take
            amount -= take


@njit(cache=True)
def _form_spreads(avail_of, legs_lo, legs_hi, ratio, side, rem, used, first, last, use_slots):
    """Form as many spreads as the legs first..last allow, A long / B short then the reverse.
    Returns the number of spreads formed."""
    total = 0.0
    for direction in (1.0, -1.0):
        n = np.inf
        for l in range(first, last):
            sign = direction * side[l]
            if use_slots:
                have = _tier_available(rem, legs_lo[l], legs_hi[l], sign)
            else:
                have = max(sign * avail_of[legs_lo[l]], 0.0)
            n = min(n, have / ratio[l])
        if n <= 1e-12 or n == np.inf:
            continue
        for l in range(first, last):
            sign = direction * side[l]
            if use_slots:
                _consume(rem, used, legs_lo[l], legs_hi[l], sign, n * ratio[l])
            else:
                avail_of[legs_lo[l]] -= sign * n * ratio[l]
        total += n
    return total


@njit(cache=True)
def requirement(vec, slot_delta, short_calls, short_puts, nov,
                cc_slot_start, spot_spread_rate, spot_outright_rate,
                intra_start, intra_rate, intra_leg_start, leg_lo, leg_hi, leg_ratio, leg_side,
                som_rate, som_max_side, premium, init_ratio,
                inter_rate, inter_leg_start, inter_leg_cc, inter_leg_ratio, inter_leg_side, out):
    """SPAN breakdown per combined commodity into out[C, N_OUT] (see the column constants)."""
    n_cc, n_s = vec.shape
    rem = slot_delta.copy()
    used = np.zeros(slot_delta.shape[0])
    net = np.zeros(n_cc)
    dummy = np.zeros(1)
    for c in range(n_cc):
        active = 0
        for k in range(1, n_s):
            if vec[c, k] > vec[c, active]:
                active = k
        scan = max(vec[c, active], 0.0)
        charge = 0.0
        for sp in range(intra_start[c], intra_start[c + 1]):
            n = _form_spreads(dummy, leg_lo, leg_hi, leg_ratio, leg_side, rem, used,
                              intra_leg_start[sp], intra_leg_start[sp + 1], True)
            charge += n * intra_rate[sp]
        spot = 0.0
        for s in range(cc_slot_start[c], cc_slot_start[c + 1]):
            spot += used[s] * spot_spread_rate[s] + abs(rem[s]) * spot_outright_rate[s]
            net[c] += rem[s]
        shorts = max(short_calls[c], short_puts[c]) if som_max_side[c] else short_calls[c] + short_puts[c]
        out[c, SCAN], out[c, INTRA], out[c, SPOT] = scan, charge, spot
        out[c, SOM] = som_rate[c] * shorts
        out[c, ACTIVE], out[c, NET_DELTA] = active, net[c]
        out[c, INTER] = 0.0
    # inter-commodity credits on the deltas left after intra spreads, valued at the weighted futures
    # price risk: price risk = (loss at the active scenario + at its pair with the other volatility
    # move) / 2 - time risk (the average of scenarios 1 and 2), per unit of net delta
    wfpr = np.zeros(n_cc)
    for c in range(n_cc):
        active = int(out[c, ACTIVE])
        paired = active ^ 1 if active < 14 else active
        time_risk = 0.5 * (vec[c, 0] + vec[c, 1])
        price_risk = 0.5 * (vec[c, active] + vec[c, paired]) - time_risk
        if out[c, SCAN] > 0.0 and abs(net[c]) > 1e-12:
            wfpr[c] = max(price_risk, 0.0) / abs(net[c])
    left = net.copy()
    for sp in range(inter_rate.shape[0]):
        first, last = inter_leg_start[sp], inter_leg_start[sp + 1]
        n = _form_spreads(left, inter_leg_cc, inter_leg_cc, inter_leg_ratio, inter_leg_side, dummy, dummy,
                          first, last, False)
        if n > 0.0:
            for l in range(first, last):
                c = inter_leg_cc[l]
                out[c, INTER] += n * inter_leg_ratio[l] * wfpr[c] * inter_rate[sp]
    for c in range(n_cc):
        risk = max(out[c, SCAN] + out[c, INTRA] + out[c, SPOT] - out[c, INTER], out[c, SOM])
        value = nov[c] if premium[c] else 0.0
        out[c, RISK], out[c, NOV] = risk, value
        out[c, MAINT] = max(risk - value, 0.0)
        out[c, INIT] = out[c, MAINT] * init_ratio[c]


@njit(cache=True)
def held_total(out, column, n_held):
    """Sum of out[c, column] over the combined commodities with open positions (n_held[c] > 0)."""
    total = 0.0
    for c in range(out.shape[0]):
        if n_held[c] > 0:
            total += out[c, column]
    return total
