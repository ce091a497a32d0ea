"""Dashboard benchmark in real Chromium (the OS package, driven by Playwright) against a real stack
(tickerplant, reference data, rdb, calc, gateway on free ports) whose reference data holds the demo's
four accounts plus LOAD synthetic ones (one position each, so calc margins them too).

A load generator publishes `margin` rows into the tickerplant as calc would (the same table, the
same path: tickerplant -> gateway feed -> the conflated SSE stream the page reads), so the rate is
chosen rather than set by the market: a few accounts at 5 rows/s (light), then every synthetic
account at RATE rows/s. Each tracked account's requirement is a unique whole number per row, so a
number that appears in the page is matched to the row that carried it.

Measured in the browser (scripts the benchmark adds to the page; the product page carries none):
  load -> blotter   navigation start -> the first blotter row drawn with every account loaded
  row -> page       publish time -> the SSE event parsed by the page (the floor: tickerplant,
                    gateway, conflation, network, JSON)
  row -> screen     publish time -> the number changed in the blotter's DOM (drawn on the next frame)
  browser CPU, fps  all Chromium processes' CPU (% of one core) and animation frames per second
                    over the loaded window; the peer in the same run is a bare page that only opens
                    the same stream and parses each event (no table): the cost of the data alone.

Run: `.venv/bin/python -m bench.bench_dashboard` (BENCH_QUICK=1: shorter runs).
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from bench.bench_gateway import Stack
from bench.browser import launch, sign_in
from bench.harness import cpu_seconds
from tickerplant.client import Publisher

QUICK = os.environ.get("BENCH_QUICK") == "1"
LOAD = 1_000
RATE = 10                       # rows per second per synthetic account under load
SECONDS = 6.0 if QUICK else 15.0
LOADS = 3 if QUICK else 5
TRACKED = [f"A{i:04d}" for i in range(1, 6)]
REPO = Path(__file__).resolve().parent.parent

INSTRUMENT = """
window.__bench = {recv: [], shown: [], frames: 0, firstRow: null, track: false};
const NativeEventSource = window.EventSource;
window.EventSource = function (url, options) {
  const source = new NativeEventSource(url, options);
  source.addEventListener("margin", e => {
    if (!__bench.track) return;
    const t = performance.timeOrigin + performance.now();
    for (const r of JSON.parse(e.data)) if (r.sym < "A0006" && r.sym >= "A0001") __bench.recv.push([r.sym, r.requirement, t]);
  });
  return source;
};
(function frame() { __bench.frames++; requestAnimationFrame(frame); })();
new MutationObserver(records => {
  const t = performance.timeOrigin + performance.now();
  const blotter = document.getElementById("blotter");
  if (__bench.firstRow === null && blotter && blotter.querySelector(".tabulator-row")) __bench.firstRow = performance.now();
  if (!__bench.track) return;
  for (const m of records) {
    const cell = (m.target.nodeType === 1 ? m.target : m.target.parentElement)?.closest?.('#blotter [tabulator-field="requirement"]');
    if (!cell) continue;
    const sym = cell.parentElement.querySelector('[tabulator-field="sym"]')?.textContent;
    if (sym >= "A0001" && sym < "A0006") __bench.shown.push([sym, cell.textContent, t]);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""

BARE_STREAM = """() => new Promise(resolve => {
  window.__bare = {events: 0};
  const source = new EventSource("/stream?tables=margin,alert&conflate=100");
  source.addEventListener("margin", e => { JSON.parse(e.data); __bare.events++; });
  source.addEventListener("open", () => resolve());
})"""


def refdata(folder: Path) -> Path:
    """data/ref plus LOAD synthetic accounts A0001.. (desk LOAD, one AAPL position each)."""
    out = folder / "ref"
    shutil.copytree(REPO / "data" / "ref", out)
    (folder / "span").symlink_to(REPO / "data" / "span")            # paramfile.csv names ../span/...
    with open(out / "account.csv", "a", newline="") as f:
        w = csv.writer(f)
        for i in range(1, LOAD + 1):
            w.writerow([f"A{i:04d}", "LOAD", "NSCC", "var", "USD", 1_000_000, 2_000_000, 5_000_000, 0.5, 0.25, 15])
    with open(out / "position.csv", "a", newline="") as f:
        w = csv.writer(f)
        for i in range(1, LOAD + 1):
            w.writerow([f"A{i:04d}", "AAPL", 100 * i, ""])
    return out


class Load:
    """Publishes margin rows for `accounts`; a tracked account's requirement is unique per row."""

    def __init__(self, ingest: str):
        self.pub = Publisher("bench.dashboard", ingest)
        self.sent: dict[tuple[str, int], float] = {}
        self.tick = 0
        self.rows = 0

    def publish(self, accounts: list[str]) -> None:
        self.tick += 1
        n, now = len(accounts), time.time()
        requirement = np.array([2_000_000.0 + 1000 * i + self.tick for i in range(n)])
        batch = {"time": np.full(n, np.datetime64(int(now * 1e9), "ns")), "sym": np.array(accounts, dtype=object),
                 "model": np.full(n, "fhs", dtype=object), "ccy": np.full(n, "USD", dtype=object),
                 "im": requirement, "vm": np.zeros(n), "requirement": requirement, "collateral": np.full(n, 1e6),
                 "excess": 1e6 - requirement, "call": requirement - 1e6, "var": requirement, "es": requirement,
                 "seq": np.full(n, self.tick, dtype=np.int64)}
        for sym, req in zip(accounts, requirement):
            if sym in TRACKED:
                self.sent[sym, int(req)] = now * 1000.0
        self.pub.publish("margin", batch)
        self.rows += n

    def run(self, accounts: list[str], rate: float, seconds: float) -> None:
        period, start = 1.0 / rate, time.perf_counter()
        for k in range(int(rate * seconds)):
            time.sleep(max(0.0, start + k * period - time.perf_counter()))
            self.publish(accounts)
        self.pub.flush(30)


def chromium_pids() -> list[int]:
    """Chromium processes descended from this one (Playwright's driver starts the browser)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        parent[int(stat.parent.name)] = (int(rest[1]), name)
    mine = os.getpid()

    def descends(pid):
        for _ in range(20):
            pid = parent.get(pid, (0, ""))[0]
            if pid == mine:
                return True
            if pid <= 1:
                return False
        return False
    return [pid for pid, (_, name) in parent.items() if "chrom" in name.lower() and descends(pid)]


def browser_cpu() -> float:
    total = 0.0
    for pid in chromium_pids():
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def latencies(page, sent: dict) -> tuple[np.ndarray, np.ndarray]:
    bench = page.evaluate("() => __bench")
    recv = [t - sent[sym, int(req)] for sym, req, t in bench["recv"] if (sym, int(req)) in sent]
    shown = [t - sent[sym, int(text.replace(",", ""))] for sym, text, t in bench["shown"]
             if text and (sym, int(text.replace(",", ""))) in sent]
    return np.array(recv), np.array(shown)


def loaded_window(page, load: Load, gateway_pid: int, accounts: list[str]) -> dict:
    """Browser CPU, fps and gateway CPU while every account gets RATE rows a second."""
    frames0, cpu0, gw0, t0 = page.evaluate("() => __bench.frames"), browser_cpu(), cpu_seconds(gateway_pid), time.perf_counter()
    load.run(accounts, RATE, SECONDS)
    elapsed = time.perf_counter() - t0
    return {"cpu": 100 * (browser_cpu() - cpu0) / elapsed, "gateway": 100 * (cpu_seconds(gateway_pid) - gw0) / elapsed,
            "fps": (page.evaluate("() => __bench.frames") - frames0) / elapsed, "rows_s": len(accounts) * RATE}


def pct(a: np.ndarray, q: float) -> str:
    return f"{np.percentile(a, q):7.0f}" if len(a) else "      -"


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_dashboard_"))
    stack = Stack(folder, refdata(folder))
    base = f"http://127.0.0.1:{stack.http_port}"
    load = Load(stack.ingest)
    everyone = [f"A{i:04d}" for i in range(1, LOAD + 1)]
    try:
        with sync_playwright() as p:
            browser = launch(p)
            context = browser.new_context(viewport={"width": 1500, "height": 950})
            context.add_init_script(INSTRUMENT)
            page = context.new_page()
            sign_in(page, base, "demo", "demo")
            loads = []
            for _ in range(LOADS):
                page.goto(base + "/")
                page.wait_for_function("() => __bench.firstRow !== null", timeout=60_000)
                loads.append(page.evaluate("() => __bench.firstRow"))
            page.wait_for_selector("#blotter .tabulator-row")
            page.click('#blotter .tabulator-col[tabulator-field="sym"] .tabulator-col-title')   # A0001.. on top
            page.evaluate("() => { __bench.track = true; }")
            load.run(TRACKED, 5, SECONDS)
            time.sleep(1.0)
            light = latencies(page, load.sent)
            page.evaluate("() => { __bench.recv = []; __bench.shown = []; }")
            load.sent.clear()
            busy = loaded_window(page, load, stack.pids["gateway"], everyone)
            time.sleep(1.0)
            heavy = latencies(page, load.sent)
            page.evaluate("() => { __bench.track = false; }")
            bare_page = context.new_page()
            page.close()
            bare_page.goto(base + "/static/favicon.svg")
            bare_page.evaluate(BARE_STREAM)
            bare = loaded_window(bare_page, load, stack.pids["gateway"], everyone)
            browser.close()
    finally:
        stack.close()
        shutil.rmtree(folder, ignore_errors=True)

    n = LOAD + 4
    print(f"\ndashboard in Chromium: {n} accounts in the blotter; stream conflated every 100 ms")
    print(f"load -> full blotter ({n} accounts): p50 {np.median(loads):.0f} ms, max {max(loads):.0f} ms over {LOADS} loads")
    print(f"\n{'latency, ms':34} {'p50':>7} {'p99':>7} {'n':>6}")
    for label, (recv, shown) in (("light (5 accounts x 5 rows/s)", light), (f"loaded ({LOAD} x {RATE} rows/s)", heavy)):
        print(f"{label + ': row -> page':34} {pct(recv, 50)} {pct(recv, 99)} {len(recv):6d}")
        print(f"{label + ': row -> screen':34} {pct(shown, 50)} {pct(shown, 99)} {len(shown):6d}")
    print(f"\n{'under load (' + str(LOAD) + ' x ' + str(RATE) + ' rows/s)':34} {'browser CPU %':>14} {'fps':>6} {'gateway CPU %':>14}")
    print(f"{'dashboard blotter':34} {busy['cpu']:14.0f} {busy['fps']:6.1f} {busy['gateway']:14.0f}")
    print(f"{'bare stream page (floor)':34} {bare['cpu']:14.0f} {bare['fps']:6.1f} {bare['gateway']:14.0f}")
    print(f"blotter / floor browser CPU: {busy['cpu'] / max(bare['cpu'], 1e-9):.1f}x; rows published {load.rows:,}")


if __name__ == "__main__":
    main()
