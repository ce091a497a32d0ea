"""calc.span positional reader: hand-written records of every supported type, malformed files,
round trip of the demo file."""
from __future__ import annotations

import pytest

from calc.span import compute, load, read
from calc.span.demo import demo_params, write_demo
from calc.span.model import SpanFileError
from calc.span.pa2 import format_pa2, read_pa2, write_pa2


def rec(rid: str, fields: dict[int, str]) -> str:
    """A record written by hand: {1-based start column: text}."""
    buf = [" "] * 140
    buf[0:2] = rid
    for col, text in fields.items():
        buf[col - 1:col - 1 + len(text)] = text
    return "".join(buf).rstrip()


def arrays(values, width):
    return "".join(f"{abs(v):0{width}d}{'-' if v < 0 else '+'}" for v in values)


KEY_ES_FUT = {3: "CME", 6: "ES", 16: "ES", 26: "FUT", 30: "202612"}
KEY_ES_CALL = {3: "CME", 6: "ES", 16: "ES", 26: "OOF", 29: "C", 30: "202612", 39: "202612", 48: "0600000"}
KEY_NQ_FUT = {3: "CME", 6: "NQ", 16: "NQ", 26: "FUT", 30: "202612"}
ES_FUT = [0, 0, -1000, -1000, 1000, 1000, -2000, -2000, 2000, 2000, -3000, -3000, 3000, 3000, -2100, 2100]
ES_CALL = [-150, 140, -700, -400, 500, 700, -1200, -1000, 900, 1000, -1800, -1700, 1100, 1100, -1500, 1250]
NQ_FUT = [0, 0, -200000, -200000, 200000, 200000, -400000, -400000, 400000, 400000, -600000, -600000, 600000,
          600000, -420000, 420000]

HAND_WRITTEN = [
    rec("0 ", {3: "TSTCX", 9: "20261120", 17: "S", 36: "U2"}),
    rec("1 ", {3: "CME", 8: "01"}),
    rec("P ", {3: "CME", 6: "ES", 16: "FUT", 19: "E-MINI S&P", 34: "002", 37: "002", 42: "00000500000000", 66: "USD"}),
    rec("P ", {3: "CME", 6: "ES", 16: "OOF", 19: "E-MINI S&P OPT", 34: "002", 37: "002", 42: "00000500000000",
               66: "USD", 76: "AMER"}),
    rec("P ", {3: "CME", 6: "NQ", 16: "FUT", 19: "E-MINI NDX", 34: "002", 37: "002", 42: "00000200000000", 66: "USD"}),
    rec("2 ", {3: "CME", 7: "ES", 14: "USD", 18: "P", 23: "ES        FUT0", 39: "ES        OOF0"}),
    rec("2 ", {3: "CME", 7: "NQ", 14: "USD", 18: "P", 23: "NQ        FUT2+"}),
    rec("3 ", {3: "ES", 9: "10", 11: "01202612202612", 25: "02202703202709", 69: "1000", 73: "1050", 77: "1100"}),
    rec("4 ", {3: "ES", 9: "10", 11: "01", 13: "01202612", 21: "0000010", 28: "0000025", 63: "0000300", 79: "2"}),
    rec("C ", {3: "ES", 9: "10", 11: "01", 13: "02", 15: "0000150", 22: "010101A", 29: "020201B"}),
    rec("E ", {3: "ES", 9: "00002", 14: "0000050", 21: "202703", 28: "010000", 34: "A", 35: "202706", 42: "020000",
               48: "B"}),
    rec("5 ", {3: "EQI", 13: "ES", 19: "NQ"}),
    rec("6 ", {3: "EQI", 6: "0001", 10: "0500000", 17: "CMEYES    0014000A", 35: "CMEYNQ    0010000B", 89: "10"}),
    rec("B ", {3: "CME", 6: "ES", 16: "FUT", 19: "202612", 37: "00000000", 45: "00000000", 53: "03000", 58: "00200",
               63: "03500", 68: "00000", 73: "0076712", 80: "002740", 86: "010000", 92: "20261218", 100: "ES"}),
    rec("B ", {3: "CME", 6: "ES", 16: "OOF", 19: "202612", 28: "202612", 37: "00180000", 45: "00050000",
               53: "03000", 58: "00300", 63: "03300", 68: "00400", 73: "0076712", 80: "002740", 86: "005000",
               92: "20261218", 100: "ES", 110: "BK"}),
    rec("81", KEY_ES_FUT | {55: arrays(ES_FUT[:9], 5)}),
    rec("82", KEY_ES_FUT | {55: arrays(ES_FUT[9:], 5), 97: "10000+", 103: "00000000", 111: "0600025+"}),
    rec("81", KEY_ES_CALL | {55: arrays(ES_CALL[:9], 5)}),
    rec("82", KEY_ES_CALL | {55: arrays(ES_CALL[9:], 5), 97: "05123+", 103: "00180000", 111: "0012550+"}),
    rec("83", KEY_NQ_FUT | {55: arrays(NQ_FUT[:9], 8)}),
    rec("84", KEY_NQ_FUT | {55: arrays(NQ_FUT[9:], 8), 118: "10000+", 124: "00000000", 132: "2100000+"}),
    rec("T ", {3: "USD"}),          # a record type the reader does not use: skipped and counted
]


@pytest.fixture
def hand_file(tmp_path):
    path = tmp_path / "hand.pa2"
    path.write_text("\n".join(HAND_WRITTEN) + "\n")
    return path


def test_every_record_type_reads_into_the_model(hand_file):
    p = read_pa2(hand_file)
    assert (p.exchange_complex, p.business_date, p.settlement) == ("TSTCX", 20261120, True)
    assert p.exchanges == {"CME": "01"} and p.skipped == {"T": 1}
    es_fut, es_opt = p.products[("CME", "ES", "FUT")], p.products[("CME", "ES", "OOF")]
    assert (es_fut.cvf, es_fut.settle_decimals, es_fut.currency) == (50.0, 2, "USD")
    assert es_opt.exercise == "AMER" and es_opt.is_option
    es = p.combined["ES"]
    assert es.products == [("CME", "ES", "FUT"), ("CME", "ES", "OOF")] and es.option_style == "P"
    assert [(t.number, t.start_month, t.end_month) for t in es.tiers] == [(1, 202612, 202612), (2, 202703, 202709)]
    assert (es.init_ratio_member, es.init_ratio_hedger, es.init_ratio) == (1.0, 1.05, 1.1)
    assert [(s.month, s.spread_rate, s.outright_rate) for s in es.spot_months] == [(202612, 10.0, 25.0)]
    assert (es.som_rate, es.som_method, es.group) == (300.0, "2", "EQI")
    tier_spread, series_spread = es.intra_spreads
    assert (tier_spread.priority, tier_spread.rate) == (1, 150.0)
    assert [(l.tier, l.ratio, l.side) for l in tier_spread.legs] == [(1, 1, "A"), (2, 1, "B")]
    assert (series_spread.priority, series_spread.rate) == (2, 50.0)
    assert [(l.month, l.ratio, l.side) for l in series_spread.legs] == [(202703, 1.0, "A"), (202706, 2.0, "B")]
    assert p.groups == {"EQI": ["ES", "NQ"]}
    (inter,) = p.inter_spreads
    assert (inter.priority, inter.rate) == (1, 0.5)
    assert [(l.cc, l.ratio, l.side) for l in inter.legs] == [("ES", 1.4, "A"), ("NQ", 1.0, "B")]
    fut_scan = p.scan[("CME", "ES", "FUT", 202612, 0)]
    assert (fut_scan.price_scan, fut_scan.extreme_multiplier, fut_scan.covered_fraction) == (3000, 2.0, 0.35)
    assert fut_scan.time_to_expiry == pytest.approx(0.076712) and fut_scan.lookahead == pytest.approx(0.00274)
    opt_scan = p.scan[("CME", "ES", "OOF", 202612, 202612)]
    assert (opt_scan.base_vol, opt_scan.vol_scan, opt_scan.rate, opt_scan.delta_scaling) == (0.18, 0.05, 0.04, 0.5)
    assert (opt_scan.extreme_multiplier, opt_scan.covered_fraction, opt_scan.pricing_model) == (3.0, 0.33, "BK")
    fut, call, nq = p.contracts
    assert fut.risk == tuple(ES_FUT) and (fut.price, fut.delta, fut.symbol) == (6000.25, 1.0, "ESZ26")
    assert call.risk == tuple(ES_CALL) and (call.strike, call.right, call.price) == (6000.0, "C", 125.5)
    assert (call.delta, call.vol, call.symbol) == (0.5123, 0.18, "ESZ26C6000")
    assert nq.risk == tuple(v / 100 for v in NQ_FUT)       # 8-digit values, decimal locator 2 from the 2 record
    assert nq.price == 21000.0


def test_hand_written_file_margin(hand_file):
    params = load(hand_file)
    res = compute(params, {"ESZ26": 2})
    (es,) = res.by_cc
    assert es.scan == 6000 and es.active_scenario == 13
    assert es.spot == 2 * 25.0                                  # two outright deltas in the spot month
    assert res.maintenance == 6050 and res.initial == pytest.approx(6050 * 1.1)


@pytest.mark.parametrize("line_no, text, record, columns", [
    (16, rec("81", KEY_ES_FUT | {55: arrays(ES_FUT[:9], 5)}).replace("01000-", "01O00-"), "81", "columns 67-72"),
    (16, rec("81", KEY_ES_FUT | {55: arrays(ES_FUT[:9], 5)}).replace("01000-", "01000*"), "81", "columns 67-72"),
    (3, rec("P ", {3: "CME", 6: "ES", 16: "FUT", 34: "0x2"}), "P", "columns 34-36"),
    (10, rec("C ", {3: "ES", 9: "10", 11: "01", 13: "02", 15: "0000150", 22: "010101A", 29: "020901B"}), "C",
     "columns 31-32"),
    (10, rec("C ", {3: "ES", 9: "10", 11: "01", 13: "02", 15: "0000150", 22: "010101A", 29: "020201X"}), "C",
     "columns 35-35"),
    (15, rec("B ", {3: "CME", 6: "ES", 16: "OOF", 63: "00000"}), "B", "columns 63-67"),
])
def test_malformed_record_names_file_line_record_and_columns(tmp_path, line_no, text, record, columns):
    lines = list(HAND_WRITTEN)
    lines[line_no - 1] = text
    path = tmp_path / "bad.pa2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpanFileError) as err:
        read_pa2(path)
    message = str(err.value)
    assert str(path) in message and f"line {line_no}" in message
    assert f"record {record!r}" in message and columns in message


def test_structural_errors(tmp_path):
    path = tmp_path / "bad.pa2"
    cases = {
        "is not followed by its second record": HAND_WRITTEN[:16] + HAND_WRITTEN[17:],
        "file ends before the second risk array record": HAND_WRITTEN[:16],
        "has no type P record": HAND_WRITTEN[:2] + HAND_WRITTEN[3:],
        "has no type 2 record before it": HAND_WRITTEN[:5] + HAND_WRITTEN[7:],
        "no exchange complex header": HAND_WRITTEN[1:],
        "does not match the 81 record": HAND_WRITTEN[:16] + [HAND_WRITTEN[16].replace("202612", "202703")],
    }
    for expected, lines in cases.items():
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(SpanFileError, match=expected):
            read_pa2(path)


def test_demo_file_round_trip(tmp_path):
    generated = demo_params()
    path = tmp_path / "demo.pa2"
    write_pa2(generated, path)
    loaded = read_pa2(path)
    assert format_pa2(loaded) == path.read_text().splitlines()         # write(read(write(p))) == write(p)
    assert len(loaded.contracts) == len(generated.contracts)
    for a, b in zip(generated.contracts, loaded.contracts):
        assert a.symbol == b.symbol and b.risk == tuple(float(round(v)) for v in a.risk)
        assert b.delta == pytest.approx(a.delta, abs=5e-5) and b.price == pytest.approx(a.price, abs=0.005)
    assert loaded.scan.keys() == generated.scan.keys()
    positions = {"ESZ26": 7, "ESH27": -3, "NQZ26C21500": -12, "NQZ26": 2}
    assert compute(loaded, positions).initial == pytest.approx(compute(generated, positions).initial, rel=1e-3)


def test_committed_demo_file_is_what_the_generator_writes(tmp_path, repo_root):
    paths = write_demo(tmp_path)
    for name in ("demo.pa2", "instruments.csv", "account.csv", "positions.csv"):
        assert (tmp_path / name).read_text() == (repo_root / "data" / "span" / name).read_text(), name
    assert read(repo_root / "data" / "span" / "demo.pa2").business_date == 20261120
    assert paths["params"].exists()
