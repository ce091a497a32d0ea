"""FIX feedhandler logic without processes: ExecutionReport parsing, booking, watermarks, settings, replay files."""
from __future__ import annotations

import numpy as np
import pytest

from common.schema import load_schemas
from feedhandlers.fix.batches import alert_batch, fill_batch, fill_rows
from feedhandlers.fix.book import Book, BookingError
from feedhandlers.fix.execreport import (CANCEL, CORRECT, OTHER, TRADE, BadValue, MissingField, fields_of,
                                         parse_execution, parse_utc_timestamp, shown)
from feedhandlers.fix.limits import Limits, LimitsError
from feedhandlers.fix.refdata import RefData
from feedhandlers.fix.settings import SettingsError, quickfix_spec_dir, resolve_settings_text
from feedhandlers.fix.watermark import PendingAcks, WatermarkFile, rewind_target
from feedhandlers.omsim.orders import OrderFlow
from feedhandlers.omsim.rawfix import RawFixError, read_messages
from feedhandlers.refdata.loader import load_refdata


def er(exec_id="E1", exec_type="F", side="1", qty="100", px="10.5", ref=None, **extra) -> dict[str, str]:
    fields = {"17": exec_id, "150": exec_type, "1": "FUND1", "55": "AMD", "54": side, "32": qty, "31": px,
              "37": "O1", "60": "20261121-10:00:00.250"}
    if ref:
        fields["19"] = ref
    fields.update({k[1:]: v for k, v in extra.items()})
    return {k: v for k, v in fields.items() if v is not None}


def known(account, sym):
    return "ok" if account == "FUND1" else "unknown"


# ---- parsing -------------------------------------------------------------------------------------
def test_trade_quantity_is_signed_by_side_and_time_is_transact_time():
    buy = parse_execution(er(side="1"), "FIX.4.4")
    sell = parse_execution(er(side="5"), "FIX.4.4")
    assert (buy.kind, buy.qty, sell.qty, buy.price) == (TRADE, 100.0, -100.0, 10.5)
    assert buy.time_ns == np.datetime64("2026-11-21T10:00:00.250", "ns").astype(np.int64)
    fallback = parse_execution(er(t60=None, t52="20261121-10:00:01"), "FIX.4.4")
    assert fallback.time_ns == np.datetime64("2026-11-21T10:00:01", "ns").astype(np.int64)


def test_fix42_dialect_uses_exec_trans_type():
    assert parse_execution(er(exec_type="2", t20="0"), "FIX.4.2").kind == TRADE
    assert parse_execution(er(exec_type="1", t20="1", ref="E0"), "FIX.4.2").kind == CANCEL
    assert parse_execution(er(exec_type="2", t20="2", ref="E0"), "FIX.4.2").kind == CORRECT
    assert parse_execution(er(exec_type="0", t20="0"), "FIX.4.2").kind == OTHER
    assert parse_execution(er(exec_type="F"), "FIXT.1.1").kind == TRADE


@pytest.mark.parametrize("fields, error, tag", [
    (er(t32=None), MissingField, 32),
    (er(t1=None), MissingField, 1),
    (er(exec_type="H"), MissingField, 19),
    (er(t32="abc"), BadValue, 32),
    (er(t32="-5"), BadValue, 32),
    (er(side="7"), BadValue, 54),
    (er(t60="2026-11-21 10:00"), BadValue, 60),
    (er(exec_type="G", ref="E1"), BadValue, 19),
])
def test_bad_execution_reports_name_the_tag(fields, error, tag):
    with pytest.raises(error) as e:
        parse_execution(fields, "FIX.4.4")
    assert e.value.tag == tag


@pytest.mark.parametrize("fields, tag, data_format", [
    (er(t55="AMD\x00"), 55, True),                 # a NUL: never booked (issue 22, case 5)
    (er(t1="FUND1\x00X"), 1, True),
    (er(t55="\udcff\udcfe"), 55, True),             # bytes FF FE as QuickFIX hands them over
    (er(t1="FUNDé"), 1, True),                       # non-ASCII
    (er(exec_id="E\t1"), 17, True),
    (er(t37="O\x7f"), 37, True),
    (er(exec_id="E" * 65), 17, False),               # longer than 64
    (er(exec_type="H", ref="E0\x00"), 19, True),
    (er(px="-5"), 31, False),                        # prices > 0 (issue 22, case 6)
    (er(px="0"), 31, False),
    (er(t60="99991231-23:59:59"), 60, True),         # not representable as int64 ns
])
def test_identifiers_must_be_printable_ascii_and_prices_positive(fields, tag, data_format):
    with pytest.raises(BadValue) as e:
        parse_execution(fields, "FIX.4.4")
    assert (e.value.tag, e.value.data_format) == (tag, data_format)
    assert str(e.value).isascii() and str(e.value).isprintable()


def test_shown_is_printable_ascii_and_bounded():
    assert shown("AMD\x00") == "'AMD\\x00'" and shown("\udcff\udcfe") == "'\\xff\\xfe'"
    assert shown("FUNDé") == "'FUND\\xe9'" and shown("N" * 100) == "'" + "N" * 64 + "'..."


def test_fat_finger_limits_most_specific_section_wins_key_by_key(tmp_path):
    path = tmp_path / "limits.toml"
    path.write_text("[default]\nmax_qty = 1000\nmax_notional = 1e6\n[assetclass.future]\nmax_qty = 10\n"
                    "[sym.ESZ26]\nmax_notional = 5e6\n")
    limits = Limits.load(path)
    assert limits.bound_for("ESZ26", "future") == (10, 5e6) and limits.bound_for("ESH27", "future") == (10, 1e6)
    assert limits.bound_for("AMD", "equity") == (1000, 1e6)
    assert limits.breach(-1000, 999.0, "AMD", "equity", 1.0) is None
    assert "LastQty 1001" in limits.breach(1001, 1.0, "AMD", "equity", 1.0)
    assert "notional 6e+06" in limits.breach(2, 60_000.0, "ESZ26", "future", 50.0)
    assert "notional inf" in limits.breach(1, float("inf"), "AMD", "equity", 1.0)
    shipped = Limits.load()                          # config/fix/limits.toml
    assert shipped.breach(9007199254740993, 10.0, "SPY", "etf", 1.0) and shipped.breach(6000, 6000.0, "ESZ26", "future", 50)
    assert shipped.breach(500, 150.0, "AMD", "equity", 1.0) is None


@pytest.mark.parametrize("text, error", [
    ("[default]\nmax_qty = 10\n", "must set both"),
    ("[default]\nmax_qty = 10\nmax_notional = -1\n", "max_notional = -1: must be a finite number > 0"),
    ("[default]\nmax_qty = 10\nmax_notional = 1\n[sym.X]\nmax_lots = 3\n", "[sym.X] max_lots: unknown key"),
    ("[default]\nmax_qty = 10\nmax_notional = 1\n[desk.X]\n", "unknown section(s) ['desk']"),
    ("[default\n", "limits.toml"),
])
def test_bad_limits_files_name_file_and_key(tmp_path, text, error):
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(LimitsError) as e:
        Limits.load(path)
    assert error in str(e.value) and str(path) in str(e.value)


def test_refdata_gives_asset_class_and_multiplier_for_the_bounds():
    ref = RefData()
    ref.on_batch("instrument", {"sym": ["ESZ26"], "assetclass": ["future"], "multiplier": np.array([50.0])}, 1)
    assert ref.contract_of("ESZ26") == ("future", 50.0) and ref.contract_of("ZZZ") == ("", 1.0)


def test_other_exec_types_are_not_booked_and_need_nothing_else():
    ex = parse_execution({"150": "0", "17": "E7"}, "FIX.4.4")
    assert (ex.kind, ex.exec_type) == (OTHER, "0")


def test_fields_of_keeps_first_occurrence():
    assert fields_of("8=FIX.4.4\x0135=8\x0155=AMD\x0155=X\x01") == {"8": "FIX.4.4", "35": "8", "55": "AMD"}


# ---- booking -------------------------------------------------------------------------------------
def book_all(book, *messages):
    rows = []
    for fields in messages:
        planned = book.rows_for(parse_execution(fields, "FIX.4.4"), known)
        book.commit(planned)
        rows += planned
    return rows


def test_cancel_and_correction_reverse_the_booked_trade():
    book = Book("OMS")
    rows = book_all(book, er("E1", qty="100", px="10"), er("E2", side="2", qty="40", px="11"),
                    er("E3", exec_type="G", ref="E1", qty="80", px="10.1"),
                    er("E4", exec_type="H", ref="E2", t32=None, t31=None))
    assert [(r.execid, r.exectype, r.qty, r.price, r.refexecid) for r in rows] == [
        ("E1", "F", 100, 10, ""), ("E2", "F", -40, 11, ""),
        ("E3", "G", -100, 10, "E1"), ("E3", "G", 80, 10.1, "E1"),
        ("E4", "H", 40, 11, "E2")]
    assert sum(r.qty for r in rows) == 80
    assert list(book.live) == ["E3"] and book.is_duplicate("E4")
    # a later bust may name the original or the correction; a second bust is refused
    again = book.rows_for(parse_execution(er("E5", exec_type="H", ref="E1"), "FIX.4.4"), known)
    assert [(r.qty, r.price) for r in again] == [(-80, 10.1)]
    book.commit(again)
    with pytest.raises(BookingError, match="already cancelled"):
        book.rows_for(parse_execution(er("E6", exec_type="H", ref="E3"), "FIX.4.4"), known)
    with pytest.raises(BookingError, match="not a booked trade"):
        book.rows_for(parse_execution(er("E7", exec_type="G", ref="NOPE"), "FIX.4.4"), known)


def test_unknown_reference_data_is_booked_with_status_unknown():
    rows = book_all(Book("OMS"), er("E1", t1="NOBODY"))
    assert rows[0].status == "unknown" and rows[0].account == "NOBODY"


def test_rows_round_trip_through_a_fill_batch_and_rebuild_the_same_book():
    live = Book("OMS")
    rows = book_all(live, er("E1"), er("E2", side="2"), er("E3", exec_type="G", ref="E1", qty="5"),
                    er("E4", exec_type="H", ref="E2"))
    schemas = load_schemas()
    n, batch = schemas["fill"].validate(fill_batch(rows))
    assert n == len(rows)
    replayed = Book("OMS")
    replayed.commit(fill_rows(batch))
    assert (replayed.booked, replayed.live, replayed.replaced_by) == (live.booked, live.live, live.replaced_by)
    assert schemas["alert"].validate(alert_batch(1, "FUND9", "unknown account FUND9"))[0] == 1


# ---- watermark -----------------------------------------------------------------------------------
def test_watermark_follows_cumulative_acks():
    p = PendingAcks(durable_seq=4)
    assert p.durable_seq == 4
    p.published(msgid=10, fix_seq=5)
    p.processed(5)
    p.processed(6)                      # not booked: durable as soon as what precedes it is
    p.published(msgid=11, fix_seq=7)
    p.processed(7)
    assert p.durable_seq == 4
    p.acked(10)
    assert p.durable_seq == 6
    p.acked(11)
    assert p.durable_seq == 7
    p.restart(1)
    assert (p.durable_seq, p.last_processed) == (1, 1)


def test_watermark_file_and_rewind(tmp_path):
    wm = WatermarkFile(tmp_path / "w" / "OMS.json")
    assert wm.load() is None
    wm.save(41)
    assert wm.load() == 41
    assert rewind_target(100, 41) == 42
    assert rewind_target(7, 41) == 7          # the store restarted its numbering since
    assert rewind_target(100, None) == 1      # no watermark: ask for the whole session again
    wm.path.write_text("{torn")
    assert wm.load() is None


# ---- settings, replay files, order flow ------------------------------------------------------------
def test_settings_resolve_dictionaries_state_paths_and_overrides(tmp_path):
    text = "# c\n[DEFAULT]\nSocketAcceptPort=9878\nFileStorePath=store\nDataDictionary=FIX44.xml\n" \
           "[SESSION]\nBeginString=FIX.4.4\nTargetCompID=OMS\n"
    out = resolve_settings_text(text, tmp_path / "a.cfg", tmp_path / "state", {"SocketAcceptPort": "5"})
    assert "SocketAcceptPort=5\n" in out
    assert f"FileStorePath={tmp_path / 'state' / 'store'}\n" in out
    assert f"DataDictionary={quickfix_spec_dir() / 'FIX44.xml'}\n" in out
    with pytest.raises(SettingsError, match="a.cfg:2: data dictionary 'FIX99.xml' not found"):
        resolve_settings_text("[DEFAULT]\nDataDictionary=FIX99.xml\n", tmp_path / "a.cfg", tmp_path)
    with pytest.raises(SettingsError, match="a.cfg:1: unknown section"):
        resolve_settings_text("[SESSIONS]\n", tmp_path / "a.cfg", tmp_path)


def test_raw_fix_files_with_either_delimiter(tmp_path):
    path = tmp_path / "msgs.fix"
    path.write_text("# drop copy capture\n"
                    "8=FIX.4.4|9=5|35=A|34=1|49=X|56=Y|98=0|108=30|10=000|\n"
                    "20261121-10:00:00.000 : 8=FIX.4.4\x019=9\x0135=8\x0134=2\x0143=Y\x0117=E1\x0155=AMD\x0110=1\x01\n"
                    "35=8|17=E2|55=GOOG\n")
    assert read_messages(path) == [("8", [(17, "E1"), (55, "AMD")]), ("8", [(17, "E2"), (55, "GOOG")])]
    path.write_text("35=8|17=E1\nnot fix\n")
    with pytest.raises(RawFixError, match="msgs.fix:2"):
        read_messages(path)


def test_order_flow_messages_parse_as_bookable_execution_reports():
    flow = OrderFlow(accounts=["FUND1", "FUND2"], prices={"AMD": 150.0, "SPY": 500.0},
                     cancel_pct=10, correct_pct=10, seed=7)
    book = Book("OMS")
    kinds = set()
    for _ in range(300):
        ex = parse_execution({str(tag): value for tag, value in flow.next_message()}, "FIX.4.4")
        kinds.add(ex.kind)
        book.commit(book.rows_for(ex, known))
    assert kinds == {TRADE, CANCEL, CORRECT}
    assert len(book.booked) == 300


def test_order_flow_from_refdata_trades_each_account_in_its_ccps_instruments():
    ref = load_refdata()
    flow = OrderFlow.from_refdata(ref, cancel_pct=0, correct_pct=0, seed=3)
    ccp_of = dict(zip(ref["account"]["sym"], ref["account"]["ccp"]))
    inst = {s: (c, m) for s, c, m in zip(ref["instrument"]["sym"], ref["instrument"]["ccp"], ref["instrument"]["multiplier"])}
    seen = set()
    for _ in range(2000):
        fields = dict(flow.next_message())
        account, sym, qty = fields[1], fields[55], int(fields[32])
        ccp, multiplier = inst[sym]
        assert ccp == ccp_of[account], (account, sym)
        assert qty % 100 == 0 if multiplier == 1 else qty < 100      # round lots of shares; a few contracts
        seen.add(account)
    assert seen == set(ccp_of)                                        # FUTS1 trades CME futures and options
    cash = OrderFlow.from_refdata(ref, assetclasses=("equity", "etf"))
    assert "FUTS1" not in cash.accounts


def test_utc_timestamps_parse_to_ns_and_bad_ones_are_data_format_errors():
    day = 20_413 * 86_400_000_000_000                  # 2025-11-21 in days since the epoch
    assert parse_utc_timestamp("60", "20251121-00:00:00") == day
    assert parse_utc_timestamp("60", "20251121-13:45:07.5") == day + 49_507_500_000_000
    assert parse_utc_timestamp("60", "20251121-13:45:07.123456789") == day + 49_507_123_456_789
    assert parse_utc_timestamp("52", "20251121-23:59:60") == day + 86_400_000_000_000     # leap second
    for bad in ("20251121-24:00:00", "20251321-10:00:00", "20250230-10:00:00", "20251121 10:00:00",
                "20251121-10:00:00.", "20251121-10:00:00.1234567890", "20251121-10:00:00,5",
                "20251121-10:00:00.5x", "2025112-10:00:00", "20251121-10:00", "", "20251121-10:00:00.-5",
                "２0251121-10:00:00"):
        with pytest.raises(BadValue) as err:
            parse_utc_timestamp("60", bad)
        assert err.value.tag == 60 and err.value.data_format, bad
