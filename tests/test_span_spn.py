"""calc.span XML reader (.spn, format 4.00): a hand-written file, its margin, malformed files."""
from __future__ import annotations

import pytest

from calc.span import compute, load, read
from calc.span.model import SpanFileError

FUT_RA = "".join(f"<a>{v}</a>" for v in (0, 0, -1000, -1000, 1000, 1000, -2000, -2000, 2000, 2000, -3000, -3000,
                                         3000, 3000, -2970, 2970))
PUT_RA = "".join(f"<a>{v}</a>" for v in (10, -10, 300, 280, -200, -250, 700, 650, -350, -400, 1200, 1150, -500,
                                         -520, 950, -1400))

SPN = f"""<?xml version="1.0"?>
<spanFile>
 <fileFormat>4.00</fileFormat>
 <created>20261120</created>
 <pointInTime>
  <date>20261120</date><isSetl>1</isSetl><setlQualifier>S</setlQualifier>
  <clearingOrg>
   <ec>CME</ec><name>Demo clearing</name>
   <pointDef>
    <scanPointDef><point>1</point><priceScanDef><mult>0</mult><numerator>0</numerator><denominator>3</denominator></priceScanDef><weight>1</weight></scanPointDef>
    <scanPointDef><point>15</point><priceScanDef><mult>3</mult><numerator>1</numerator><denominator>1</denominator></priceScanDef><weight>0.33</weight></scanPointDef>
   </pointDef>
   <exchange>
    <exch>CME</exch><name>Chicago</name>
    <futPf>
     <pfId>1</pfId><pfCode>ES</pfCode><name>E-mini S&amp;P</name><currency>USD</currency><cvf>50</cvf><priceDl>2</priceDl>
     <fut><cId>11</cId><pe>202612</pe><p>6000.25</p><d>1</d><t>0.0767</t>
      <scanRate><r>1</r><priceScan>3000</priceScan><volScan>0</volScan></scanRate><ra><r>1</r>{FUT_RA}<d>1</d></ra></fut>
     <fut><cId>12</cId><pe>202703</pe><p>6050</p><d>1</d>
      <scanRate><r>1</r><priceScan>3000</priceScan></scanRate><ra><r>1</r>{FUT_RA}<d>1</d></ra></fut>
    </futPf>
    <oofPf>
     <pfId>2</pfId><pfCode>ES</pfCode><name>E-mini S&amp;P options</name><exercise>AMER</exercise><currency>USD</currency>
     <cvf>50</cvf><priceDl>2</priceDl><strikeDl>2</strikeDl><valueMeth>PREM</valueMeth>
     <undPf><exch>CME</exch><pfId>1</pfId><pfCode>ES</pfCode><pfType>FUT</pfType></undPf>
     <series><pe>202612</pe><v>0.18</v><t>0.0767</t><undC><exch>CME</exch><pfId>1</pfId><cId>11</cId></undC>
      <intrRate><val>0.04</val></intrRate>
      <scanRate><r>1</r><priceScan>3000</priceScan><volScan>0.05</volScan></scanRate>
      <opt><cId>21</cId><o>P</o><k>5900</k><p>40.5</p><d>-0.3</d><v>0.2</v><ra><r>1</r>{PUT_RA}<d>-0.3</d></ra></opt>
     </series>
    </oofPf>
   </exchange>
   <ccDef>
    <cc>ES</cc><name>E-mini S&amp;P</name><currency>USD</currency><somMeth>2</somMeth>
    <pfLink><exch>CME</exch><pfId>1</pfId><pfCode>ES</pfCode><pfType>FUT</pfType></pfLink>
    <pfLink><exch>CME</exch><pfId>2</pfId><pfCode>ES</pfCode><pfType>OOF</pfType></pfLink>
    <adjRate><r>1</r><baseR>1</baseR><val>1</val></adjRate>
    <adjRate><r>2</r><baseR>1</baseR><val>1.1</val></adjRate>
    <intraTiers><tier><tn>1</tn><sPe>202612</sPe><ePe>202612</ePe></tier><tier><tn>2</tn><sPe>202703</sPe><ePe>202712</ePe></tier></intraTiers>
    <somTiers><tier><tn>1</tn><rate><r>1</r><val>250</val></rate></tier></somTiers>
    <dSpread><spread>1</spread><chargeMeth>10</chargeMeth><rate><r>1</r><val>150</val></rate>
     <tLeg><cc>ES</cc><tn>1</tn><rs>A</rs><i>1</i></tLeg><tLeg><cc>ES</cc><tn>2</tn><rs>B</rs><i>1</i></tLeg></dSpread>
    <dSpread><spread>2</spread><chargeMeth>10</chargeMeth><rate><r>1</r><val>40</val></rate>
     <pLeg><cc>ES</cc><pe>202612</pe><rs>A</rs><i>1</i></pLeg><pLeg><cc>ES</cc><pe>202703</pe><rs>B</rs><i>2</i></pLeg></dSpread>
    <spotRate><r>1</r><pe>202612</pe><sprd>10</sprd><outr>25</outr></spotRate>
   </ccDef>
   <interSpreads>
    <dSpread><spread>1</spread><rate><r>1</r><val>0.5</val></rate>
     <tLeg><cc>ES</cc><tn>0</tn><rs>A</rs><i>1</i></tLeg><tLeg><cc>NQ</cc><tn>0</tn><rs>B</rs><i>1</i></tLeg></dSpread>
   </interSpreads>
  </clearingOrg>
 </pointInTime>
</spanFile>
"""


@pytest.fixture
def spn_file(tmp_path):
    path = tmp_path / "demo.spn"
    path.write_text(SPN)
    return path


def test_xml_reads_into_the_model(spn_file):
    p = read(spn_file)
    assert (p.exchange_complex, p.business_date, p.settlement) == ("CME", 20261120, True)
    fut, fut2, put = p.contracts
    assert (fut.symbol, fut.price, fut.delta, fut.risk[14]) == ("ESZ26", 6000.25, 1.0, -2970.0)
    assert (put.symbol, put.strike, put.price, put.delta, put.vol) == ("ESZ26P5900", 5900.0, 40.5, -0.3, 0.2)
    assert put.futures_month == 202612 and put.risk[15] == -1400.0
    s = p.scan[("CME", "ES", "OOF", 202612, 202612)]
    assert (s.price_scan, s.vol_scan, s.rate, s.extreme_multiplier, s.covered_fraction) == (3000, 0.05, 0.04, 3.0, 0.33)
    es = p.combined["ES"]
    assert es.products == [("CME", "ES", "FUT"), ("CME", "ES", "OOF")] and es.option_style == "P"
    assert (es.som_rate, es.som_method, es.init_ratio) == (250.0, "2", 1.1)
    assert [(t.number, t.start_month, t.end_month) for t in es.tiers] == [(1, 202612, 202612), (2, 202703, 202712)]
    tier_spread, month_spread = es.intra_spreads
    assert (tier_spread.priority, tier_spread.rate) == (1, 150.0)
    assert [(l.tier, l.side) for l in tier_spread.legs] == [(1, "A"), (2, "B")]
    assert (month_spread.priority, month_spread.rate) == (2, 40.0)
    assert [(l.month, l.ratio, l.side) for l in month_spread.legs] == [(202612, 1.0, "A"), (202703, 2.0, "B")]
    assert [(m.month, m.spread_rate, m.outright_rate) for m in es.spot_months] == [(202612, 10.0, 25.0)]
    (inter,) = p.inter_spreads
    assert [(l.cc, l.side) for l in inter.legs] == [("ES", "A"), ("NQ", "B")] and inter.rate == 0.5


def test_xml_margin(spn_file):
    params = load(spn_file)                     # the NQ leg of the inter spread is not in the file: never forms
    es = compute(params, {"ESZ26": 1, "ESH27": -1, "ESZ26P5900": -2}).by_cc[0]
    # scan: max over scenarios of -2 x put array (the futures cancel) = 2 x 1400 at scenario 16
    assert (es.scan, es.active_scenario, es.intra) == (2800.0, 16, 150.0)
    # Dec deltas: +1 future, +0.6 from the short puts -> 1 tier spread with Mar, 0.6 outright (the
    # Dec / Mar month spread of priority 2 finds no Mar delta left)
    assert es.spot == pytest.approx(1 * 10 + 0.6 * 25)
    assert es.som == 500.0 and es.nov == pytest.approx(-2 * 40.5 * 50)


@pytest.mark.parametrize("old, new, element, message", [
    ("<fileFormat>4.00</fileFormat>", "<fileFormat>3.00</fileFormat>", "<fileFormat>", "not supported"),
    ("<a>-1400</a>", "", "<a>", "expected 16 values, found 15"),
    ("<a>-1400</a>", "<a>x</a>", "<a>", "not a number"),
    ("<k>5900</k>", "", "<k>", "missing"),
    ("<o>P</o>", "<o>Q</o>", "<o>", "option right"),
    ("<cId>11</cId></undC>", "<cId>99</cId></undC>", "<cId>", "is not defined"),
    ("<tn>2</tn><rs>B</rs>", "<tn>7</tn><rs>B</rs>", "<tn>", "tier 7 is not defined"),
    ("<somMeth>2</somMeth>", "<somMeth>9</somMeth>", "<somMeth>", "not supported"),
])
def test_malformed_xml_names_file_line_and_element(tmp_path, old, new, element, message):
    path = tmp_path / "bad.spn"
    assert old in SPN
    path.write_text(SPN.replace(old, new, 1))
    with pytest.raises(SpanFileError) as err:
        read(path)
    text = str(err.value)
    assert str(path) in text and "line " in text and element in text and message in text


def test_broken_xml(tmp_path):
    path = tmp_path / "broken.spn"
    path.write_text(SPN.replace("</futPf>", "", 1))
    with pytest.raises(SpanFileError, match=r"broken.spn: line \d+, record 'xml', column \d+: mismatched tag"):
        read(path)
