"""Reader of SPAN XML risk parameter files (".spn", file format 4.00) into `SpanParams`.

Read: pointInTime/date and isSetl; clearingOrg/ec; pointDef/scanPointDef (extreme move multiplier
and covered fraction: the points weighted below 1); exchange/futPf/fut and exchange/oofPf/series/opt
(prices, deltas, volatilities, 16-value risk arrays `ra`, scan ranges `scanRate`); ccDef (pfLink
products, intraTiers, somTiers / somMeth, intra dSpread with tLeg / pLeg, spotRate, adjRate as the
initial / maintenance ratio); interSpreads/dSpread. Errors name the file, line, element and child.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from .model import (N_SCENARIOS, SOM_GROSS, SOM_MAX_SIDE, CombinedCommodity, Contract, Product, ScanParameters,
                    SpanFileError, SpanParams, SpotMonth, Spread, SpreadLeg, Tier)

_LINE = "_line"        # attribute the parser adds to every element: its line in the file
_SOM_METHODS = {"1": SOM_GROSS, "GROSS": SOM_GROSS, "2": SOM_MAX_SIDE, "MAX": SOM_MAX_SIDE}


def _parse(path: Path) -> ET.Element:
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def start(tag, attrs):
        builder.start(tag, {**attrs, _LINE: str(parser.CurrentLineNumber)})

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as exc:
        raise SpanFileError(path, f"line {exc.lineno}", "xml", f"column {exc.offset + 1}",
                            expat.errors.messages[exc.code]) from exc
    return builder.close()


class _Reader:
    def __init__(self, path: Path):
        self.path = path

    def error(self, el: ET.Element, child: str, message: str) -> SpanFileError:
        return SpanFileError(self.path, f"line {el.get(_LINE)}", el.tag, f"element <{child}>", message)

    def text(self, el: ET.Element, child: str, default: str | None = None) -> str:
        node = el.find(child)
        if node is None or node.text is None or not node.text.strip():
            if default is None:
                raise self.error(el, child, "missing")
            return default
        return node.text.strip()

    def number(self, el: ET.Element, child: str, default: float | None = None) -> float:
        raw = self.text(el, child, None if default is None else str(default))
        try:
            return float(raw)
        except ValueError:
            node = el.find(child)
            raise self.error(node if node is not None else el, child, f"not a number: {raw!r}") from None

    def integer(self, el: ET.Element, child: str, default: int | None = None) -> int:
        value = self.number(el, child, default)
        if value != int(value):
            raise self.error(el, child, f"not an integer: {value!r}")
        return int(value)

    def rate(self, el: ET.Element) -> float:
        """The maintenance rate (r = 1, else the first) of an element with <rate> children."""
        rates = el.findall("rate")
        if not rates:
            raise self.error(el, "rate", "missing")
        chosen = next((r for r in rates if self.text(r, "r", "1") == "1"), rates[0])
        return self.number(chosen, "val")

    def risk_array(self, el: ET.Element) -> tuple[float, ...]:
        ra = el.find("ra")
        if ra is None:
            raise self.error(el, "ra", "missing risk array")
        values = ra.findall("a")
        if len(values) != N_SCENARIOS:
            raise self.error(ra, "a", f"expected {N_SCENARIOS} values, found {len(values)}")
        out = []
        for a in values:
            try:
                out.append(float(a.text))
            except (TypeError, ValueError):
                raise self.error(ra, "a", f"not a number: {a.text!r}") from None
        return tuple(out)


def read_spn(path) -> SpanParams:
    """Load a SPAN XML file (format 4.00) into the internal model."""
    path = Path(path)
    root = _parse(path)
    rd = _Reader(path)
    if root.tag != "spanFile":
        raise rd.error(root, "spanFile", f"root element is <{root.tag}>")
    fmt = rd.text(root, "fileFormat")
    if fmt != "4.00":
        raise rd.error(root, "fileFormat", f"file format {fmt!r} is not supported (4.00)")
    pit = root.find("pointInTime")
    if pit is None:
        raise rd.error(root, "pointInTime", "missing")
    org = pit.find("clearingOrg")
    if org is None:
        raise rd.error(pit, "clearingOrg", "missing")
    params = SpanParams(exchange_complex=rd.text(org, "ec"), business_date=rd.integer(pit, "date"),
                        settlement=rd.text(pit, "isSetl", "1") == "1", source=str(path))
    extreme, covered = _extreme_move(rd, org)
    for exchange in org.findall("exchange"):
        _read_exchange(rd, params, exchange, extreme, covered)
    for cc_el in org.findall("ccDef"):
        _read_cc(rd, params, cc_el)
    inter = org.find("interSpreads")
    for ds in ([] if inter is None else inter.findall("dSpread")):
        legs = [SpreadLeg(rd.number(leg, "i"), _side(rd, leg), cc=rd.text(leg, "cc")) for leg in ds.findall("tLeg")]
        if len(legs) < 2:
            raise rd.error(ds, "tLeg", "an inter-commodity spread needs at least two legs")
        params.inter_spreads.append(Spread(rd.integer(ds, "spread"), rd.rate(ds), legs))
    return params


def _extreme_move(rd: _Reader, org: ET.Element) -> tuple[float, float]:
    """(multiplier, covered fraction) of the extreme scenarios from pointDef; (3, 0.33) if absent."""
    point_def = org.find("pointDef")
    for p in ([] if point_def is None else point_def.findall("scanPointDef")):
        weight = rd.number(p, "weight", 1.0)
        if weight < 1.0:
            scan = p.find("priceScanDef")
            if scan is None:
                raise rd.error(p, "priceScanDef", "missing")
            mult = rd.number(scan, "mult") * rd.number(scan, "numerator", 1) / rd.number(scan, "denominator", 1)
            return abs(mult), weight
    return 3.0, 0.33


def _side(rd: _Reader, leg: ET.Element) -> str:
    side = rd.text(leg, "rs")
    if side not in ("A", "B"):
        raise rd.error(leg, "rs", f"spread side must be A or B, found {side!r}")
    return side


def _scan(rd, el, extreme, covered, **extra) -> ScanParameters:
    sr = el.find("scanRate")
    if sr is None:
        raise rd.error(el, "scanRate", "missing")
    return ScanParameters(price_scan=rd.number(sr, "priceScan"), vol_scan=rd.number(sr, "volScan", 0.0),
                          extreme_multiplier=extreme, covered_fraction=covered, **extra)


def _read_exchange(rd, params, exchange, extreme, covered) -> None:
    exch = rd.text(exchange, "exch")
    params.exchanges.setdefault(exch, "")
    futures_month: dict[tuple[str, str], int] = {}       # (pfId, cId) -> futures month
    for pf in exchange.findall("futPf"):
        code = rd.text(pf, "pfCode")
        product = Product(exch, code, "FUT", rd.text(pf, "name", code), rd.text(pf, "currency", "USD"),
                          rd.number(pf, "cvf"), settle_decimals=rd.integer(pf, "priceDl", 0))
        params.products[product.key] = product
        for fut in pf.findall("fut"):
            month = rd.integer(fut, "pe")
            futures_month[(rd.text(pf, "pfId", code), rd.text(fut, "cId", str(month)))] = month
            params.contracts.append(Contract(exch, code, "FUT", month, underlying=code, risk=rd.risk_array(fut),
                                             delta=rd.number(fut, "d", 1.0), price=rd.number(fut, "p")))
            params.scan[(exch, code, "FUT", month, 0)] = _scan(rd, fut, extreme, covered,
                                                               time_to_expiry=rd.number(fut, "t", 0.0))
    for pf in exchange.findall("oofPf"):
        code = rd.text(pf, "pfCode")
        und = pf.find("undPf")
        if und is None:
            raise rd.error(pf, "undPf", "missing underlying futures portfolio")
        und_code, und_id = rd.text(und, "pfCode"), rd.text(und, "pfId", rd.text(und, "pfCode"))
        product = Product(exch, code, "OOF", rd.text(pf, "name", code), rd.text(pf, "currency", "USD"),
                          rd.number(pf, "cvf"), settle_decimals=rd.integer(pf, "priceDl", 0),
                          strike_decimals=rd.integer(pf, "strikeDl", 0), exercise=rd.text(pf, "exercise", ""),
                          futures_style=rd.text(pf, "valueMeth", "PREM") == "FUT")
        params.products[product.key] = product
        for series in pf.findall("series"):
            month = rd.integer(series, "pe")
            und_c = series.find("undC")
            if und_c is None:
                raise rd.error(series, "undC", "missing underlying contract")
            key = (rd.text(und_c, "pfId", und_id), rd.text(und_c, "cId"))
            if key not in futures_month:
                raise rd.error(und_c, "cId", f"underlying futures contract {key} is not defined")
            fmonth = futures_month[key]
            rate_el = series.find("intrRate")
            params.scan[(exch, code, "OOF", fmonth, month)] = _scan(
                rd, series, extreme, covered, time_to_expiry=rd.number(series, "t", 0.0),
                rate=0.0 if rate_el is None else rd.number(rate_el, "val"), base_vol=rd.number(series, "v", 0.0),
                underlying=und_code)
            for opt in series.findall("opt"):
                right = rd.text(opt, "o")
                if right not in ("C", "P"):
                    raise rd.error(opt, "o", f"option right must be C or P, found {right!r}")
                params.contracts.append(Contract(exch, code, "OOF", fmonth, month, right, rd.number(opt, "k"),
                                                 und_code, rd.risk_array(opt), rd.number(opt, "d"),
                                                 rd.number(opt, "p"), rd.number(opt, "v", 0.0)))


def _read_cc(rd, params, el) -> None:
    code = rd.text(el, "cc")
    cc = CombinedCommodity(code=code, currency=rd.text(el, "currency", "USD"))
    for link in el.findall("pfLink"):
        key = (rd.text(link, "exch"), rd.text(link, "pfCode"), rd.text(link, "pfType"))
        if key not in params.products:
            raise rd.error(link, "pfCode", f"product {key} is not defined in an exchange")
        cc.products.append(key)
        cc.exchange = key[0]
        if params.products[key].futures_style:
            cc.option_style = "F"
    tiers = el.find("intraTiers")
    for t in ([] if tiers is None else tiers.findall("tier")):
        cc.tiers.append(Tier(rd.integer(t, "tn"), rd.integer(t, "sPe", 0), rd.integer(t, "ePe", 999912)))
    som = el.find("somTiers")
    if som is not None and som.find("tier") is not None:
        cc.som_rate = rd.rate(som.find("tier"))
    method = rd.text(el, "somMeth", "1")
    if method not in _SOM_METHODS:
        raise rd.error(el, "somMeth", f"short option minimum method {method!r} is not supported (1 / 2)")
    cc.som_method = _SOM_METHODS[method]
    known = {t.number for t in cc.tiers}
    for ds in el.findall("dSpread"):
        legs = []
        for leg in ds.findall("tLeg"):
            tier = rd.integer(leg, "tn")
            if tier not in known:
                raise rd.error(leg, "tn", f"tier {tier} is not defined for {code}")
            legs.append(SpreadLeg(rd.number(leg, "i"), _side(rd, leg), tier=tier))
        legs += [SpreadLeg(rd.number(leg, "i"), _side(rd, leg), month=rd.integer(leg, "pe"))
                 for leg in ds.findall("pLeg")]
        if len(legs) < 2:
            raise rd.error(ds, "tLeg", "an intra-commodity spread needs at least two legs")
        cc.intra_spreads.append(Spread(rd.integer(ds, "spread"), rd.rate(ds), legs))
    for sr in el.findall("spotRate"):
        cc.spot_months.append(SpotMonth(rd.integer(sr, "pe"), rd.number(sr, "sprd"), rd.number(sr, "outr")))
    for adj in el.findall("adjRate"):
        if rd.text(adj, "r", "1") != rd.text(adj, "baseR", "1"):
            cc.init_ratio = rd.number(adj, "val")
    params.combined[code] = cc
