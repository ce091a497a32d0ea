"""The price simulator: correlated intraday moves calibrated on the real history, as `quote` batches.

Each step moves every sym once (correlated geometric Brownian motion: the calibrated daily
volatilities and correlations, scaled to the step's share of a 6.5-hour session) and quotes it:
price = the simulated trade price, bid / ask = price -/+ half the spread rounded out to the tick,
size = a random round lot, vol = the annualised volatility the generator is using now (calibrated x
the current event multiplier), src = `sim`. Market events shift prices at once and set volatility
multipliers for the steps that follow.

Pacing: with `steps_per_sec` > 0, step k is due at start (`start(now_ns)`) + k / steps_per_sec and its rows carry that
time; with 0 the simulator runs as fast as it is polled, `max_rows` rows a batch, stamped with the
poll time. Each step covers `step_seconds` of market time (default 1 / steps_per_sec: real time).
"""
from __future__ import annotations

import math

import numpy as np

from feedhandlers.prices.calibrate import SESSION_SECONDS, TRADING_DAYS, Calibration
from feedhandlers.prices.events import MarketEvent
from feedhandlers.prices.kernels import correlated_steps
from feedhandlers.prices.source import QuoteSource


class PriceSimulator(QuoteSource):
    name = "sim"

    def __init__(self, calibration: Calibration, steps_per_sec: float = 10.0, step_seconds: float | None = None,
                 max_rows: int = 10_000, half_spread_bps: float = 2.0, tick: float = 0.01,
                 seed: int | None = None):
        if steps_per_sec < 0 or max_rows < 1 or half_spread_bps < 0 or tick <= 0:
            raise ValueError("steps_per_sec >= 0, max_rows >= 1, half_spread_bps >= 0 and tick > 0 are required")
        self.calibration = calibration
        self.syms = np.array(calibration.syms, dtype=object)
        self.log_price = np.log(calibration.start)
        self.vol_multiplier = np.ones(len(self.syms))
        self.step_seconds = step_seconds if step_seconds is not None else (1 / steps_per_sec if steps_per_sec else 1.0)
        self.step_ns = int(1e9 / steps_per_sec) if steps_per_sec else 0
        self.max_steps = max(1, max_rows // len(self.syms))
        self.half_spread = half_spread_bps * 1e-4
        self.tick = tick
        self.rng = np.random.default_rng(seed)
        self.start_ns = 0
        self.steps_done = 0
        self.events_applied = 0
        self._index = {s: i for i, s in enumerate(calibration.syms)}
        empty = np.empty((0, len(self.syms)))
        correlated_steps(self.log_price.copy(), self._step_sigma(), calibration.chol, empty, empty)  # compile now

    def start(self, now_ns: int) -> None:
        self.start_ns = now_ns

    def _step_sigma(self) -> np.ndarray:
        return self.calibration.daily_vol * self.vol_multiplier * math.sqrt(self.step_seconds / SESSION_SECONDS)

    def annual_vol(self) -> np.ndarray:
        """The annualised volatility per sym the generator uses now (what the `vol` column carries)."""
        return self.calibration.daily_vol * self.vol_multiplier * math.sqrt(TRADING_DAYS)

    def prices(self) -> dict[str, float]:
        return dict(zip(self.calibration.syms, np.exp(self.log_price).tolist()))

    def steps(self, count: int) -> np.ndarray:
        """Advances `count` steps; returns their prices (count x syms)."""
        normals = self.rng.standard_normal((count, len(self.syms)))
        out = np.empty_like(normals)
        correlated_steps(self.log_price, self._step_sigma(), self.calibration.chol, normals, out)
        self.steps_done += count
        return out

    def quotes(self, prices: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """The `quote` batch of a block of steps (steps x syms prices, one time per step)."""
        steps, n = prices.shape
        price = prices.ravel()
        return {
            "time": np.repeat(times.astype("datetime64[ns]"), n),
            "sym": np.tile(self.syms, steps),
            "bid": np.floor(price * (1 - self.half_spread) / self.tick) * self.tick,
            "ask": np.ceil(price * (1 + self.half_spread) / self.tick) * self.tick,
            "price": price,
            "size": self.rng.integers(1, 50, steps * n).astype(np.float64) * 100,
            "vol": np.tile(self.annual_vol(), steps),
            "src": np.full(steps * n, self.name, dtype=object),
        }

    def next_due_ns(self, now_ns: int) -> int:
        return self.start_ns + self.steps_done * self.step_ns if self.step_ns else now_ns

    def poll(self, now_ns: int) -> dict[str, np.ndarray] | None:
        if not self.step_ns:
            return self.quotes(self.steps(self.max_steps), np.full(self.max_steps, now_ns))
        due = (now_ns - self.start_ns) // self.step_ns + 1 - self.steps_done
        count = min(int(due), self.max_steps)
        if count <= 0:
            return None
        times = self.start_ns + (self.steps_done + np.arange(count)) * self.step_ns
        return self.quotes(self.steps(count), times)

    def apply_event(self, event: MarketEvent) -> None:
        """Moves prices by the event's shocks now and sets its volatility multipliers (ValueError on an unknown sym)."""
        unknown = [s for s in (*event.shocks, *event.vol) if s not in self._index]
        if unknown:
            raise ValueError(f"{event.text}: not simulated: {', '.join(sorted(set(unknown)))}")
        for sym, ret in event.shocks.items():
            self.log_price[self._index[sym]] += math.log1p(ret)
        for sym, multiplier in event.vol.items():
            self.vol_multiplier[self._index[sym]] = multiplier
        self.events_applied += 1

    def status(self) -> dict:
        return {"source": self.name, "steps": self.steps_done, "events": self.events_applied,
                "prices": self.prices(), "vol": dict(zip(self.calibration.syms, self.annual_vol().tolist()))}
