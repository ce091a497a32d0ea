"""The price feed process against a real tickerplant: simulated quotes, events from the control socket,
the command line and a schedule, accelerated CSV replay, bad replay files."""
from __future__ import annotations

import numpy as np
import pytest

from common.rpc import RpcClient, RpcError
from conftest import wait_until
from feedhandlers.prices.replay import CsvReplay
from feedhandlers.refdata.csvtable import TableFileError


def _last(quotes: dict, sym: str) -> tuple[float, float]:
    rows = np.flatnonzero(quotes["sym"] == sym)
    return quotes["price"][rows[-1]], quotes["vol"][rows[-1]]


def test_simulated_quotes_and_events_from_control_socket_and_command_line(spawn, free_port, tickerplant, collected):
    control = f"tcp://127.0.0.1:{free_port()}"
    feed = spawn("feedhandlers.prices", "--ingest", tickerplant.ingest, "--control", control,
                 "--steps-per-sec", "20", "--seed", "1", "--syms", "AMD,AAPL,SPY")
    rpc = RpcClient(control, timeout=5.0)
    wait_until(lambda: collected.count("quote") >= 30, timeout=60, what="first quotes")
    amd0, vol0 = _last(collected.table("quote"), "AMD")
    spy0, spy_vol0 = _last(collected.table("quote"), "SPY")

    reply = rpc.call("event", spec="antitrust AMD")
    assert reply["shocks"] == {"AMD": -0.15, "AAPL": -0.05} and reply["vol"] == {"AMD": 2.0, "AAPL": 2.0}
    with pytest.raises(RpcError, match="unknown sym 'XYZ'"):
        rpc.call("event", spec="antitrust XYZ")                     # refused, and the feed goes on
    seen = collected.count("quote")
    wait_until(lambda: collected.count("quote") >= seen + 30, timeout=60, what="quotes after the event")
    amd1, vol1 = _last(collected.table("quote"), "AMD")
    spy1, spy_vol1 = _last(collected.table("quote"), "SPY")
    assert amd1 / amd0 - 1 == pytest.approx(-0.15, abs=0.02)        # 20 steps of 1/20 s barely move it
    assert vol1 == pytest.approx(2 * vol0) and spy_vol1 == pytest.approx(spy_vol0)
    assert spy1 / spy0 - 1 == pytest.approx(0, abs=0.01)

    sent = spawn("feedhandlers.prices", "--control", control, "--send", "shock SPY=-0.1")
    assert sent.wait(60) == 0
    seen = collected.count("quote")
    wait_until(lambda: collected.count("quote") >= seen + 30, timeout=60, what="quotes after --send")
    assert _last(collected.table("quote"), "SPY")[0] / spy1 - 1 == pytest.approx(-0.1, abs=0.01)

    status = rpc.call("status")
    assert status["source"] == "sim" and status["events"] == 2 and status["rejected"] == 0
    stopped = rpc.call("stop")
    assert feed.wait(60) == 0
    wait_until(lambda: collected.count("quote") == stopped["rows"], timeout=60, what="every quote flushed")
    rows, batch = len(collected.table("quote")["sym"]), collected.table("quote")
    assert set(batch["sym"]) == {"AMD", "AAPL", "SPY"} and rows % 3 == 0
    assert (np.diff(batch["time"][::3].astype(np.int64)) == 50_000_000).all()     # one step per 1/20 s


def test_scheduled_event_fires(spawn, free_port, tickerplant, collected):
    feed = spawn("feedhandlers.prices", "--ingest", tickerplant.ingest, "--control", f"tcp://127.0.0.1:{free_port()}",
                 "--steps-per-sec", "20", "--syms", "AMD,SPY", "--at", "+1 vol AMD=3", "--duration", "3")
    assert feed.wait(60) == 0
    vols = collected.table("quote")
    amd = vols["vol"][vols["sym"] == "AMD"]
    assert amd[0] * 3 == pytest.approx(amd[-1])
    assert (vols["vol"][vols["sym"] == "SPY"] == vols["vol"][1]).all()


TICKS = """time,sym,bid,ask,price,size,vol,src
2018-04-12T13:30:00.000,AMD,9.80,9.82,9.81,100,,
2018-04-12T13:30:00.000,AAPL,,,172.50,,,vendorX
2018-04-12T13:30:01.000,AMD,9.79,9.81,9.80,200,0.55,
2018-04-12T13:30:02.500,AMD,9.60,9.62,9.61,500,1.1,
2018-04-12T13:30:04.000,AAPL,172.0,172.2,172.10,300,,
"""


def test_replay_due_times_are_scaled_by_speed(tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_text(TICKS)
    replay = CsvReplay(path, speed=4)
    replay.start(10**12)
    assert replay.next_due_ns(0) == 10**12
    first = replay.poll(10**12)
    assert list(first["sym"]) == ["AMD", "AAPL"] and list(first["src"]) == ["replay", "vendorX"]
    assert replay.next_due_ns(0) == 10**12 + 250_000_000                 # 1 s of ticks in 1/4 s
    assert replay.poll(10**12 + 249_999_999) is None
    assert len(replay.poll(10**12 + 625_000_000)["sym"]) == 2            # the ticks of 1 s and 2.5 s
    assert replay.next_due_ns(0) == 10**12 + 1_000_000_000
    last = replay.poll(10**12 + 1_000_000_000)
    assert last["time"][0] == np.datetime64("2018-04-12T13:30:04", "ns")  # original time kept
    assert replay.next_due_ns(0) is None


def test_accelerated_replay_through_the_tickerplant(spawn, free_port, tickerplant, tmp_path, collected):
    path = tmp_path / "ticks.csv"
    path.write_text(TICKS)
    feed = spawn("feedhandlers.prices", "--ingest", tickerplant.ingest, "--control", f"tcp://127.0.0.1:{free_port()}",
                 "--replay", path, "--speed", "8", "--restamp")
    assert feed.wait(60) == 0                           # ends when the file is done
    wait_until(lambda: collected.count("quote") == 5, timeout=30, what="5 replayed quotes")
    quotes = collected.table("quote")
    assert list(quotes["price"]) == [9.81, 172.50, 9.80, 9.61, 172.10]
    assert np.isnan(quotes["bid"][1]) and quotes["vol"][3] == 1.1
    offsets = (quotes["time"] - quotes["time"][0]).astype(np.int64)
    assert list(offsets) == [0, 0, 125_000_000, 312_500_000, 500_000_000]    # restamped at 8x speed


def test_bad_replay_file_names_line_and_field_and_publishes_nothing(spawn, free_port, tickerplant, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(TICKS.replace("9.80,200", "9.80,lots").replace("2018-04-12T13:30:04.000", "2018-04-12T13:29:00")
                    + ",AMD,,,9.5,,,\n")
    with pytest.raises(TableFileError) as info:
        CsvReplay(path)
    assert info.value.errors == [
        "bad.csv:4: size: 'lots' is not a finite float",
        "bad.csv:7: time: must not be blank",
        "bad.csv:6: time: 2018-04-12T13:29:00.000000000 is earlier than the row before (rows must be in time order)",
    ]
    feed = spawn("feedhandlers.prices", "--ingest", tickerplant.ingest, "--replay", path,
                 "--control", f"tcp://127.0.0.1:{free_port()}")
    assert feed.wait(60) == 1
    assert "bad.csv:4: size: 'lots' is not a finite float" in feed.log_path.read_text()
    assert tickerplant.status()["seq"] == 0


VENDOR_ADAPTER = '''
import time
import numpy as np
from feedhandlers.prices.source import QuoteSource


class VendorQuotes(QuoteSource):
    """A stand-in for a vendor's API: quotes one at a time, a dropped link, a malformed message."""
    name = "vendorX"

    def __init__(self):
        self.pending = [("AMD", 9.5), "link down", ("AAPL", 170.0), "no vol column", ("AMD", 9.4)]

    def next_due_ns(self, now_ns):
        return now_ns if self.pending else None

    def poll(self, now_ns):
        item = self.pending.pop(0)
        if item == "link down":
            raise ConnectionError("vendor link down")
        if item == "no vol column":
            return {"sym": np.array(["AMD"], dtype=object), "price": np.array([1.0])}
        sym, price = item
        return {"time": np.array([now_ns], dtype="datetime64[ns]"), "sym": np.array([sym], dtype=object),
                "bid": np.array([np.nan]), "ask": np.array([np.nan]), "price": np.array([price]),
                "size": np.array([np.nan]), "vol": np.array([np.nan]), "src": np.array([self.name], dtype=object)}
'''


def test_vendor_adapter_plugs_in_and_its_failures_do_not_stop_the_feed(spawn, free_port, tickerplant, tmp_path, repo_root, collected):
    (tmp_path / "vendor_adapter.py").write_text(VENDOR_ADAPTER)
    feed = spawn("feedhandlers.prices", "--ingest", tickerplant.ingest, "--control", f"tcp://127.0.0.1:{free_port()}",
                 "--source", "vendor_adapter:VendorQuotes", env={"PYTHONPATH": f"{repo_root}:{tmp_path}"})
    assert feed.wait(60) == 0
    wait_until(lambda: collected.count("quote") == 3, timeout=30, what="the vendor's quotes")
    quotes = collected.table("quote")
    assert list(quotes["sym"]) == ["AMD", "AAPL", "AMD"] and set(quotes["src"]) == {"vendorX"}
    log = feed.log_path.read_text()
    assert "source vendorX failed to produce quotes" in log and "ConnectionError: vendor link down" in log
    assert "rejected: quote: columns do not match the schema" in log   # the tickerplant refused the malformed one
    bad = spawn("feedhandlers.prices", "--ingest", tickerplant.ingest, "--source", "vendor_adapter:Nope",
                "--control", f"tcp://127.0.0.1:{free_port()}", env={"PYTHONPATH": f"{repo_root}:{tmp_path}"})
    assert bad.wait(60) == 1
    assert "--source vendor_adapter:Nope: cannot load Nope from vendor_adapter" in bad.log_path.read_text()
