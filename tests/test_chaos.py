"""Whole-stack fault injection: the short version of `python -m chaos` (10,000 fills, 5 SIGKILLs, every
process real), and the checks it relies on, fed with differences they must catch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from chaos import checks
from chaos.run import VICTIMS

SEED = 97          # its first five victims are the five processes: rdb, fix, calc, tickerplant, gateway


def test_short_chaos_run_loses_and_doubles_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "--fills", "10000", "--rate", "500", "--kill-every", "3",
                             "--max-kills", "5", "--seed", str(SEED), "--json", "--state-dir", str(tmp_path),
                             "--log-level", "WARNING"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.terminate()                    # SIGTERM: chaos stops its stack before exiting
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"chaos did not finish within 240 s:\n{err[-6000:]}")
    assert proc.returncode == 0, err[-6000:]
    s = json.loads(out)
    assert "CHAOS PASSED" in err
    assert s["ok"] and s["settled"] and not s["unrecovered"]
    assert s["kills"] == 5
    for name in VICTIMS:
        row = s["processes"][name]
        assert row["kills"] == 1 and row["restarts"] >= 1 and row["longest_recovery_s"] > 0, (name, row)
    for where in ("journal", "rdb_fills"):
        assert (s[where]["sent"], s[where]["booked"], s[where]["lost"], s[where]["doubled"],
                s[where]["not_sent"]) == (10_000, 10_000, 0, 0, 0)
    assert s["calc_positions"]["differ"] == 0 and s["calc_positions"]["positions"] > 0
    assert s["rdb_tables"]["ok"] and s["rdb_tables"]["rows"] > 10_000
    sub = s["subscriber"]
    assert sub["batches"] == sub["journal_batches"] > 0 and sub["gaps"] == sub["repeats"] == 0
    assert sub["recoveries"] >= 2             # its start, then the tickerplant's restart
    assert s["fresh_calc"]["ok"] and s["fresh_calc"]["rows"] >= 4


def test_bad_options_are_refused():
    proc = subprocess.run([sys.executable, "-m", "chaos", "--fills", "0"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--fills >= 1" in proc.stderr


def test_booked_once_counts_lost_doubled_and_unsent():
    r = checks.booked_once(["E1", "E2", "E3"], np.array(["E1", "E3", "E3", "E9"], dtype=object))
    assert (r["ok"], r["sent"], r["booked"], r["lost"], r["doubled"], r["not_sent"]) == (False, 3, 1, 1, 1, 1)
    assert r["examples"] == ["E2", "E3", "E9"]
    assert checks.booked_once(["E1", "E2"], ["E2", "E1"])["ok"]


def test_margin_compared_bit_for_bit():
    row = {f: 1.0 for f in ("im", "vm", "requirement", "collateral", "excess", "call", "var", "es")}
    nan = {**row, "var": float("nan")}
    assert checks.compare_margin({("F", "hs"): nan}, {("F", "hs"): dict(nan)})["ok"]
    ulp = {**row, "im": np.nextafter(1.0, 2.0)}
    r = checks.compare_margin({("F", "hs"): row}, {("F", "hs"): ulp, ("G", "hs"): row})
    assert not r["ok"] and r["differ"] == 2
    assert "im differ" in r["examples"][0] and "only in the fresh calc" in r["examples"][1]


def test_subscriber_gap_repeat_and_order_are_caught(tmp_path):
    from common.codec import pack
    from common.schema import load_schemas
    from tickerplant import journal

    schema = load_schemas()["margin"]
    batches = []
    for seq in (3, 5, 8):
        cols = {c.name: np.array([np.datetime64(seq, "ns")] if c.name == "time" else
                                 ["F"] if c.is_text else [seq], dtype=object if c.is_text else c.dtype)
                for c in schema.columns}
        batches.append(cols)
        with open(journal.journal_path(str(tmp_path), "2026-12-05"), "ab") as f:
            f.write(journal.encode_record(seq, seq, 0, b"margin", b"calc", pack(cols)))
    j = checks.Journal(str(tmp_path))
    assert j.seqs("margin") == [3, 5, 8]
    assert checks.compare_subscriber(j, [3, 5, 8], checks.concat(batches))["ok"]
    gap = checks.compare_subscriber(j, [3, 8], checks.concat([batches[0], batches[2]]))
    assert not gap["ok"] and gap["gaps"] == 1
    repeat = checks.compare_subscriber(j, [3, 5, 5, 8], checks.concat([batches[0], batches[1], batches[1], batches[2]]))
    assert not repeat["ok"] and repeat["repeats"] == 1
    swapped = checks.compare_subscriber(j, [5, 3, 8], checks.concat([batches[1], batches[0], batches[2]]))
    assert not swapped["ok"] and not swapped["in_order"]
    changed = dict(batches[2], im=np.array([9.5]))
    wrong = checks.compare_subscriber(j, [3, 5, 8], checks.concat([batches[0], batches[1], changed]))
    assert not wrong["ok"] and wrong["examples"] == ["column im differs"]
