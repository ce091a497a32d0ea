"""Reference data files: the demo data loads and is consistent; broken files give file:line:field errors
and nothing at all; the command line publishes nothing when a file is wrong."""
import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from common.history import load_history
from conftest import wait_until
from feedhandlers.refdata.loader import REFDATA_DIR, PUBLISH_ORDER, RefDataError, load_instruments, load_refdata


@pytest.fixture
def ref_dir(tmp_path):
    """A writable copy of the demo reference files (and data/span beside it, which paramfile.csv names)."""
    folder = tmp_path / "ref"
    shutil.copytree(REFDATA_DIR, folder)
    shutil.copytree(REFDATA_DIR.parent / "span", tmp_path / "span")
    return folder


def _reported(expected: str, errors: list[str]) -> bool:
    return any(e.startswith(expected) for e in errors)


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_demo_reference_data_loads_and_is_consistent():
    batches = load_refdata()
    assert list(batches) == list(PUBLISH_ORDER)
    instruments = batches["instrument"]
    assert {"AAPL", "AMD", "GOOG", "META", "AMZN", "SPY"} <= set(instruments["sym"])
    tech = set(instruments["sym"][instruments["sector"] == "tech"])
    assert "AMD" in tech and "SPY" not in tech
    assert set(batches["account"]["sym"]) == {"FUND1", "FUND2", "FUND3", "FUTS1"}
    history = load_history()
    settle = dict(zip(batches["settle"]["sym"], batches["settle"]["price"]))
    cash = set(instruments["sym"][np.isin(instruments["assetclass"], ["equity", "etf"])])
    assert {s: settle[s] for s in cash} == {s: history.last_close()[s] for s in cash}
    derivatives = set(instruments["sym"]) - cash                 # the SPAN demo's futures and options
    assert derivatives and derivatives <= set(settle) and batches["paramfile"]["kind"].tolist() == ["span"]
    on_history = np.isin(batches["settle"]["sym"], list(cash))
    assert (batches["settle"]["date"][on_history] == np.datetime64("2018-04-11")).all()
    pos = batches["position"]
    fund1 = {s: q * p for s, a, q, p in zip(pos["sym"], pos["account"], pos["qty"], pos["price"]) if a == "FUND1"}
    assert max(fund1, key=fund1.get) == "AMD"                  # the scenario's large semiconductor position
    assert all(p == settle[s] for s, p in zip(pos["sym"], pos["price"]))   # blank price = settlement price


def test_load_instruments_alone():
    instruments = load_instruments()
    assert len(instruments["sym"]) == 21 + 176 and instruments["multiplier"].dtype == np.float64


def test_errors_name_file_line_and_field_and_nothing_is_loaded(ref_dir):
    _edit(ref_dir / "instrument.csv", "AMD,equity,USD,1,", "AMD,equity,USD,x,")
    _edit(ref_dir / "instrument.csv", "GM,equity", "GM,bond")
    _edit(ref_dir / "account.csv", "15000000,4000000,0.5", "15000000,4000000,1.5")
    with open(ref_dir / "position.csv", "a") as f:
        f.write("FUND9,AAPL,5,\nFUND1,GOOG,5,\nFUND1,AAPL,abc,\n")
    with open(ref_dir / "collateral.csv", "a") as f:
        f.write(",FUND2,0,cash,WIRE-0009\n,FUND2,5,cash,WIRE-0001\n")
    with pytest.raises(RefDataError) as info:
        load_refdata(ref_dir)
    errors = info.value.errors
    for expected in [
        "instrument.csv:3: multiplier: 'x' is not a finite float",
        "instrument.csv:12: assetclass: 'bond' is not one of ['equity', 'etf', 'future', 'option']",
        "account.csv:3: callpct: must be in (0, 1] (a share of the buffer)",
        "position.csv:29: account: unknown account 'FUND9' (not a valid row of account.csv)",
        "position.csv:30: account,sym: duplicate ('FUND1', 'GOOG') (first at position.csv:4)",
        "position.csv:31: qty: 'abc' is not a finite float",
        "collateral.csv:4: amount: must not be 0 (> 0 posted, < 0 withdrawn)",
        "collateral.csv:5: ref: duplicate 'WIRE-0001' (first at collateral.csv:2)",
    ]:
        assert _reported(expected, errors), (expected, errors)
    assert str(info.value).startswith(f"{len(errors)} error(s)")


@pytest.mark.parametrize("file, old, new, expected", [
    ("instrument.csv", "sym,assetclass", "symbol,assetclass",
     ["instrument.csv:1: symbol: unknown column", "instrument.csv:1: sym: missing column"]),
    ("instrument.csv", "AAPL,equity,USD,1,tech,NSCC,var,,,,,",
     "AAPL,equity,USD,1,tech,NSCC,var,AAPL,2018-06-15,,,", ["instrument.csv:2: underlying: must be blank for a equity",
                                                            "instrument.csv:2: expiry: must be blank for a equity"]),
    ("instrument.csv", "\nSPY,", "\nSPYC,option,USD,100,index,NSCC,var,SPY,2018-06-15,0,X,\nSPY,",
     ["instrument.csv:22: strike: must be > 0", "instrument.csv:22: putcall: 'X' is not C or P"]),
    ("instrument.csv", "\nSPY,", "\nESM8,future,USD,50,index,CME,span,,,,,\nSPY,",
     ["instrument.csv:22: underlying: required for a future", "instrument.csv:22: expiry: required for a future"]),
    ("instrument.csv", "AMD,equity,USD,1,tech,NSCC,var", "AMD,equity,USD,1,tech,NSCC,black",
     ["instrument.csv:3: model: 'black' is not one of ['span', 'var']"]),
    ("account.csv", "FUND1,TECH,NSCC,", "FUND1,TECH,,", ["account.csv:2: ccp: must not be blank"]),
    ("account.csv", "FUND2,VALUE,NSCC,var,USD,3000000", "FUND2,VALUE,NSCC,var,USD,-1",
     ["account.csv:3: collateral: must be >= 0"]),
    ("position.csv", "FUND1,AMD,4000000,", "FUND1,AMD,4000000", ["position.csv:2: row: 3 fields, the header has 4"]),
    ("collateral.csv", ",FUND1,1000000", "2026-13-01T00:00:00,FUND1,1000000",
     ["collateral.csv:2: time: '2026-13-01T00:00:00' is not a timestamp"]),
])
def test_each_kind_of_error_is_reported(ref_dir, file, old, new, expected):
    _edit(ref_dir / file, old, new)
    with pytest.raises(RefDataError) as info:
        load_refdata(ref_dir)
    for e in expected:
        assert _reported(e, info.value.errors), (e, info.value.errors)
    assert len(info.value.errors) == len(expected)          # no cascade of follow-on errors


def test_derivatives_and_settle_file_and_paramfile(ref_dir):
    with open(ref_dir / "instrument.csv", "a") as f:
        f.write("AMD180615C10,option,USD,100,tech,OCC,span,AMD,2018-06-15,10,C,\n")
    with open(ref_dir / "settle.csv", "a") as f:
        f.write("AMD180615C10,0.85,2018-04-11\nAMD,9.9,2018-04-11\n")
    (ref_dir / "span.pa2").write_bytes(b"demo risk parameter file\n")
    (ref_dir / "paramfile.csv").write_text("sym,kind,path\nOCC,span,span.pa2\n")
    batches = load_refdata(ref_dir)
    settle = dict(zip(batches["settle"]["sym"], batches["settle"]["price"]))
    assert settle["AMD180615C10"] == 0.85 and settle["AMD"] == 9.9          # settle.csv wins over history
    option = list(batches["instrument"]["sym"]).index("AMD180615C10")
    assert batches["instrument"]["expiry"][option] == np.datetime64("2018-06-15")
    assert batches["instrument"]["putcall"][option] == "C"
    assert batches["paramfile"]["path"][0] == str(ref_dir / "span.pa2")
    assert batches["paramfile"]["sha256"][0] == hashlib.sha256(b"demo risk parameter file\n").hexdigest()


def test_missing_paramfile_target_is_an_error(ref_dir):
    (ref_dir / "paramfile.csv").write_text("sym,kind,path\nCME,span,nowhere.pa2\n")
    with pytest.raises(RefDataError, match=r"paramfile.csv:2: path: cannot read .*nowhere.pa2"):
        load_refdata(ref_dir)


def test_check_command_reports_errors_and_exit_status(ref_dir, repo_root):
    ok = subprocess.run([sys.executable, "-m", "feedhandlers.refdata", "--check", "--dir", str(ref_dir)],
                        cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "instrument 197" in ok.stdout
    _edit(ref_dir / "account.csv", "FUND3,ARB", "FUND3,ARB,extra")
    bad = subprocess.run([sys.executable, "-m", "feedhandlers.refdata", "--check", "--dir", str(ref_dir)],
                         cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0] == "account.csv:4: row: 12 fields, the header has 11"
    assert "nothing published" in bad.stderr


def test_publishes_every_table_through_the_tickerplant(spawn, tickerplant, collected):
    proc = spawn("feedhandlers.refdata", "--ingest", tickerplant.ingest)
    assert proc.wait(120) == 0
    expected = {"instrument": 197, "account": 4, "settle": 197, "position": 27, "collateral": 2, "paramfile": 1}
    wait_until(lambda: all(collected.count(t) == n for t, n in expected.items()), timeout=30,
               what="every reference table")
    position = collected.table("position")
    assert position["price"][list(position["sym"]).index("AMD")] == pytest.approx(9.82)

    post = spawn("feedhandlers.refdata", "--ingest", tickerplant.ingest, "--collateral", "FUND1", "2500000",
                 "--ref", "WIRE-0100")
    assert post.wait(120) == 0
    wait_until(lambda: collected.count("collateral") == 3, timeout=30, what="the collateral movement")
    movement = {k: v[-1] for k, v in collected.table("collateral").items()}
    assert (movement["sym"], movement["amount"], movement["kind"], movement["ref"]) == \
        ("FUND1", 2_500_000.0, "cash", "WIRE-0100")


def test_nothing_is_published_when_a_file_is_wrong(spawn, tickerplant, ref_dir):
    _edit(ref_dir / "position.csv", "FUND3,SPY,-80000,", "FUND3,SPY,-80000,-5")
    proc = spawn("feedhandlers.refdata", "--ingest", tickerplant.ingest, "--dir", ref_dir)
    assert proc.wait(120) == 1
    log = proc.log_path.read_text()
    assert "position.csv:19: price: must be > 0" in log and "nothing published" in log
    bad_post = spawn("feedhandlers.refdata", "--ingest", tickerplant.ingest, "--collateral", "FUND7", "1e6")
    assert bad_post.wait(120) == 1
    assert "--collateral: account: unknown account 'FUND7'" in bad_post.log_path.read_text()
    assert tickerplant.status()["seq"] == 0
