"""Gateway benchmark: what-if round trips from PyKX clients (kdb+ IPC) and over HTTP, at 1, 10 and
100 concurrent clients: p50 / p99 latency and throughput.

A real stack is started on free ports (tickerplant, reference data, rdb, calc, gateway; no price
feed, so calc is idle but for the what-ifs). Clients run in separate processes (threads of
SyncQConnection for PyKX; asyncio tasks of aiohttp for HTTP), each doing back-to-back what-ifs of
one trade for the demo fund for a fixed time; every client process, the gateway and calc share the
same machine, so the figures include the client cost.

Baselines in the same run: `calc rpc` (the what-if straight to calc over ZeroMQ, no gateway: the
backend's share), `pykx ping` (an empty query: the PyKX client and the gateway, no backend) and
`pykx floor` (`positions[FUND1]`: the same hops as a what-if, PyKX -> gateway -> calc over ZeroMQ and
back, with next to no work in calc; no what-if can beat this round trip on the same machine).

Each row also gives the CPU time per request of calc, of the gateway and of the client processes
(user + system, from /proc and the clients' process_time): on a shared 2-core machine this is the
budget that decides throughput, where wall-clock latency mostly measures the neighbours' load.

Run: `.venv/bin/python -m bench.bench_gateway` (BENCH_QUICK=1: shorter runs).
"""
from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.harness import cpu_seconds, free_endpoint, wait_for
from common.net import free_port, listening
from common.rpc import rpc_answer
from common.rpc import RpcClient

QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = 2.0 if QUICK else 6.0
CLIENTS = (1, 10, 100)
PROCESSES = 4
REPO = Path(__file__).resolve().parent.parent
TRADE = ("FUND1", "SPY", -1000.0, float("nan"))


class Stack:
    """tickerplant + refdata + rdb + calc + gateway as subprocesses in a temporary folder."""

    def __init__(self, folder: Path, refdata: Path | None = None):
        self.procs: list[subprocess.Popen] = []
        self.folder = folder
        ingest, pub, control, rdb, calc = (free_endpoint() for _ in range(5))
        self.port, self.http_port = free_port(), free_port()
        self._run("tickerplant", "--ingest", ingest, "--pub", pub, "--control", control,
                  "--journal", folder / "journal", "--log-level", "WARNING")
        wait_for(lambda: rpc_answer(control), "tickerplant")
        subprocess.run([sys.executable, "-m", "feedhandlers.refdata", "--ingest", ingest,
                        *(["--dir", refdata] if refdata else [])], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        self._run("rdb", "--control", control, "--query", rdb, "--hdb", folder / "hdb", "--log-level", "WARNING")
        self._run("calc", "--control", control, "--ingest", ingest, "--query", calc, "--log-level", "WARNING")
        self._run("gateway", "--port", self.port, "--http-port", self.http_port, "--rdb", rdb, "--calc", calc,
                  "--control", control, "--log-level", "WARNING")
        wait_for(lambda: (s := rpc_answer(calc)) and s["accounts"] > 0, "calc")
        wait_for(lambda: listening(self.port), "gateway")
        self.calc, self.ingest = calc, ingest
        self.pids = {name: p.pid for name, p in zip(("tickerplant", "rdb", "calc", "gateway"), self.procs)}

    def _run(self, module, *args):
        with open(self.folder / f"{module}.log", "wb") as log:
            self.procs.append(subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                                               stdout=log, stderr=subprocess.STDOUT))


    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _threads(calls, seconds: float, start_at: float, out) -> None:
    """Runs each of `calls` (one per client) back to back in its own thread; puts the latencies and
    the process's CPU seconds over the run."""
    lat: list[list[float]] = [[] for _ in calls]

    def loop(i):
        call, mine = calls[i], lat[i]
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while (t0 := time.perf_counter()) and time.time() < end:
            call()
            mine.append(time.perf_counter() - t0)
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(calls))]
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(([x for per in lat for x in per], time.process_time() - cpu))


def _pykx_worker(port: int, clients: int, seconds: float, start_at: float, out, query=("whatif", *TRADE)) -> None:
    import pykx as kx
    # timeout > 0: PyKX then blocks in select() for the reply; with its default 0 it busy-polls,
    # and the spinning clients would take the cores the gateway and calc need
    conns = [kx.SyncQConnection("127.0.0.1", port, username="demo", password="demo", timeout=60.0)
             for _ in range(clients)]
    for c in conns:
        c(*query)
    _threads([lambda c=c: c(*query) for c in conns], seconds, start_at, out)


def _pykx_ping_worker(port: int, clients: int, seconds: float, start_at: float, out) -> None:
    """An empty query: the PyKX client and the gateway's own cost, no backend call."""
    _pykx_worker(port, clients, seconds, start_at, out, query=("",))


def _pykx_floor_worker(port: int, clients: int, seconds: float, start_at: float, out) -> None:
    """positions[FUND1]: a what-if's hops with next to no work in calc (the round trip's floor)."""
    _pykx_worker(port, clients, seconds, start_at, out, query=("positions", TRADE[0]))


def _calc_worker(endpoint: str, clients: int, seconds: float, start_at: float, out) -> None:
    """The same what-if straight to calc over ZeroMQ (no gateway): the backend's share."""
    trades = {"sym": [TRADE[1]], "qty": np.array([TRADE[2]]), "price": np.array([TRADE[3]])}
    rpcs = [RpcClient(endpoint, timeout=30.0) for _ in range(clients)]
    _threads([lambda r=r: r.call("whatif", account=TRADE[0], trades=trades) for r in rpcs], seconds, start_at, out)


def _http_worker(port: int, clients: int, seconds: float, start_at: float, out) -> None:
    import aiohttp

    async def run():
        auth = {"Authorization": "Basic " + base64.b64encode(b"demo:demo").decode()}
        body = {"account": TRADE[0], "sym": TRADE[1], "qty": TRADE[2]}
        lat: list[float] = []
        async with aiohttp.ClientSession(headers=auth, connector=aiohttp.TCPConnector(limit=0)) as session:
            url = f"http://127.0.0.1:{port}/whatif"

            async def one():
                async with session.post(url, json=body) as r:
                    await r.read()
                    assert r.status == 200, r.status

            await one()
            await asyncio.sleep(max(0.0, start_at - time.time()))
            cpu = time.process_time()

            async def loop():
                await asyncio.sleep(max(0.0, start_at - time.time()))
                end = start_at + seconds
                while time.time() < end:
                    t0 = time.perf_counter()
                    await one()
                    lat.append(time.perf_counter() - t0)
            await asyncio.gather(*(loop() for _ in range(clients)))
        return lat, time.process_time() - cpu
    out.put(asyncio.run(run()))


def measure(worker, port, clients: int, servers: dict[str, int]) -> dict:
    """Latencies and throughput of `clients` running `worker`, and CPU per request of the servers
    (`servers`: name -> pid) and of the clients."""
    procs = min(PROCESSES, clients)
    share = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3.0 + 0.05 * clients          # time for every client to connect
    workers = [ctx.Process(target=worker, args=(port, n, SECONDS, start_at, out)) for n in share]
    for w in workers:
        w.start()
    time.sleep(max(0.0, start_at - time.time()))             # the servers' CPU over the timed run only
    cpu0 = {name: cpu_seconds(pid) for name, pid in servers.items()}
    time.sleep(SECONDS)
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in servers.items()}
    results = [out.get(timeout=120 + SECONDS) for _ in workers]
    lat = np.array([x for lats, _ in results for x in lats]) * 1e3
    cpu["clients"] = sum(c for _, c in results)
    for w in workers:
        w.join(30)
    n = max(len(lat), 1)
    return {"clients": clients, "n": len(lat), "p50_ms": np.percentile(lat, 50), "p99_ms": np.percentile(lat, 99),
            "per_s": len(lat) / SECONDS, **{f"{k}_us": 1e6 * v / n for k, v in cpu.items()}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        try:
            rows = []
            runs = [("calc rpc", _calc_worker, stack.calc, (1, 10)), ("pykx ping", _pykx_ping_worker, stack.port, (1, 10)),
                    ("pykx floor", _pykx_floor_worker, stack.port, (1, 10)),
                    ("pykx ipc", _pykx_worker, stack.port, CLIENTS), ("http json", _http_worker, stack.http_port, CLIENTS)]
            servers = {k: stack.pids[k] for k in ("calc", "gateway")}
            for name, worker, port, counts in runs:
                for clients in counts:
                    rows.append({"api": name, **measure(worker, port, clients, servers)})
                    r = rows[-1]
                    print(f"  {name:10s} {clients:4d} clients: {r['per_s']:8.0f}/s p50 {r['p50_ms']:.2f} ms "
                          f"p99 {r['p99_ms']:.2f} ms", flush=True)
        finally:
            stack.close()
    print(f"\nwhat-if round trip (one trade, FUND1, {SECONDS:g} s per row; clients and servers share "
          f"{os.cpu_count()} cores)")
    print("CPU us / request: calc, gateway, clients (user + system, all threads)")
    print(f"{'api':10s} {'clients':>7s} {'what-ifs':>9s} {'per s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'calc us':>8s} {'gw us':>8s} {'cli us':>8s}")
    for r in rows:
        print(f"{r['api']:10s} {r['clients']:7d} {r['n']:9d} {r['per_s']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['calc_us']:8.0f} {r['gateway_us']:8.0f} {r['clients_us']:8.0f}")


if __name__ == "__main__":
    main()
