"""Reader and writer of the CME expanded positional risk parameter file (".pa2") for `SpanParams`.

Supported record types: 0, 1, P, 2, 3, 4, 5, 6, C, E, B, 81 + 82 and 83 + 84 (8-digit risk array
values). Other record types of the format are skipped and counted in `skipped`. The whole file is
parsed before anything is returned, so a malformed file raises `SpanFileError` (file, line, record
type, columns) and nothing is half-loaded.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .layout import CONTRACT_KEY_COLUMNS, LAYOUTS, Field
from .model import (N_SCENARIOS, CombinedCommodity, Contract, Product, ScanParameters, SpanFileError,
                    SpanParams, SpotMonth, Spread, SpreadLeg, Tier)

_WIDTHS = {rid: max(f.end + (1 if f.kind == "S" else 0) for f in fields) for rid, fields in LAYOUTS.items()}


class _Line:
    """One record being parsed: field access with errors that say where."""

    def __init__(self, path, number: int, text: str):
        self.path, self.number = path, number
        self.rid = text[:2]
        self.text = text.ljust(_WIDTHS[self.rid])
        self.fields = {f.name: f for f in LAYOUTS[self.rid]}

    def error(self, field: Field | None, message: str) -> SpanFileError:
        return SpanFileError(self.path, f"line {self.number}", self.rid.strip(),
                             field.columns if field else "whole record", message)

    def __getitem__(self, name: str):
        f = self.fields[name]
        raw = self.text[f.start - 1:f.end]
        if f.kind == "X":
            return raw.strip()
        digits = raw.strip()
        if digits and not digits.isdigit():
            raise self.error(f, f"expected {f.width} digits, found {raw!r}")
        value = int(digits or 0)
        if f.kind == "S":
            sign = self.text[f.end]
            if sign not in "+- ":
                raise self.error(f, f"expected a sign '+' or '-', found {sign!r}")
            value = -value if sign == "-" else value
        return value / 10 ** f.decimals if f.decimals else value

    def require(self, name: str) -> str:
        value = self[name]
        if not value:
            raise self.error(self.fields[name], "must not be blank")
        return value


def read_pa2(path) -> SpanParams:
    """Load an expanded positional SPAN file into the internal model."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise SpanFileError(path, f"byte {exc.start}", "?", "whole record", "not an ASCII file") from exc
    builder = _Builder(path)
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        rid = text[:2]
        if rid not in LAYOUTS:
            builder.skipped[rid.strip()] += 1
            continue
        builder.add(_Line(path, number, text))
    return builder.finish()


class _Builder:
    def __init__(self, path):
        self.params = SpanParams(source=str(path))
        self.skipped: Counter = Counter()
        self.ra_decimals: dict[tuple[str, str, str], int] = {}
        self.pending: _Line | None = None       # an 81 / 83 waiting for its 82 / 84
        self.path = path

    def add(self, line: _Line) -> None:
        if self.pending is not None and line.rid not in ("82", "84"):
            raise self.pending.error(None, f"record {self.pending.rid} is not followed by its second record")
        getattr(self, "_r" + line.rid.strip())(line)

    def finish(self) -> SpanParams:
        if self.pending is not None:
            raise self.pending.error(None, "file ends before the second risk array record")
        p = self.params
        if not p.business_date:
            raise SpanFileError(self.path, "whole file", "0", "columns 9-16", "no exchange complex header (type 0)")
        p.skipped = dict(self.skipped)
        return p

    def _cc(self, line: _Line) -> CombinedCommodity:
        code = line.require("cc")
        cc = self.params.combined.get(code)
        if cc is None:
            raise line.error(line.fields["cc"], f"combined commodity {code!r} has no type 2 record before it")
        return cc

    def _r0(self, line):
        self.params.exchange_complex = line["exchange_complex"]
        self.params.business_date = line["business_date"]
        self.params.settlement = line["settlement_flag"] != "I"
        if self.params.business_date < 19000101:
            raise line.error(line.fields["business_date"], "business date must be CCYYMMDD")

    def _r1(self, line):
        self.params.exchanges[line.require("exchange")] = line["exchange_code"]

    def _rP(self, line):
        product = Product(exchange=line.require("exchange"), code=line.require("code"),
                          product_type=line.require("product_type"), name=line["name"],
                          currency=line["currency"] or "USD", cvf=line["cvf"],
                          settle_decimals=line["settle_decimals"], strike_decimals=line["strike_decimals"],
                          exercise=line["exercise"])
        if product.cvf <= 0:
            raise line.error(line.fields["cvf"], "contract value factor must be positive")
        self.params.products[product.key] = product

    def _r2(self, line):
        code, exchange = line.require("cc"), line.require("exchange")
        style = line["option_style"] or "P"
        if style not in ("P", "F"):
            raise line.error(line.fields["option_style"], f"option margin style must be P or F, found {style!r}")
        cc = self.params.combined.setdefault(code, CombinedCommodity(code=code, exchange=exchange))
        cc.currency, cc.option_style = line["currency"] or "USD", style
        for i in range(1, 7):
            product_code = line[f"product{i}.code"]
            if not product_code:
                continue
            key = (exchange, product_code, line.require(f"product{i}.product_type"))
            decimals = line[f"product{i}.ra_decimals"]
            self.ra_decimals[key] = -decimals if line[f"product{i}.ra_decimals_sign"] == "-" else decimals
            cc.products.append(key)

    def _r3(self, line):
        cc = self._cc(line)
        for i in range(1, 5):
            number = line[f"tier{i}.number"]
            if number:
                tier = Tier(number, line[f"tier{i}.start"], line[f"tier{i}.end"])
                if tier.start_month > tier.end_month:
                    raise line.error(line.fields[f"tier{i}.start"], "tier starts after it ends")
                cc.tiers.append(tier)
        ratios = line["ratio_member"], line["ratio_hedger"], line["ratio_spec"]
        cc.init_ratio_member, cc.init_ratio_hedger, cc.init_ratio = (r or 1.0 for r in ratios)

    def _r4(self, line):
        cc = self._cc(line)
        method = line["delivery_method"]
        if method == "10":
            for i in range(1, min(line["months"], 2) + 1):
                cc.spot_months.append(SpotMonth(line[f"spot{i}.month"], line[f"spot{i}.spread_rate"],
                                                line[f"spot{i}.outright_rate"]))
        elif method not in ("", "00"):
            raise line.error(line.fields["delivery_method"], f"delivery charge method {method!r} is not supported")
        cc.som_rate = line["som_rate"]
        cc.som_method = line["som_method"] or "1"
        if cc.som_method not in ("1", "2"):
            raise line.error(line.fields["som_method"], "short option minimum method must be 1 or 2")

    def _r5(self, line):
        group = line.require("group")
        members = self.params.groups.setdefault(group, [])
        for i in range(1, 11):
            code = line[f"cc{i}.code"]
            if code:
                members.append(code)
                if code in self.params.combined:
                    self.params.combined[code].group = group

    def _r6(self, line):
        legs = []
        for i in range(1, 5):
            if not line[f"leg{i}.cc"]:
                continue
            legs.append(SpreadLeg(ratio=line[f"leg{i}.ratio"], side=self._side(line, f"leg{i}.side"),
                                  cc=line[f"leg{i}.cc"]))
        if len(legs) < 2:
            raise line.error(line.fields["leg1.cc"], "an inter-commodity spread needs at least two legs")
        self.params.inter_spreads.append(Spread(line["priority"], line["credit_rate"], legs))

    def _rC(self, line):
        cc = self._cc(line)
        legs = [SpreadLeg(ratio=line[f"leg{i}.ratio"], side=self._side(line, f"leg{i}.side"),
                          tier=line[f"leg{i}.tier"])
                for i in range(1, min(line["legs"], 4) + 1)]
        if len(legs) < 2:
            raise line.error(line.fields["legs"], "a tier spread needs at least two legs")
        known = {t.number for t in cc.tiers}
        for i, leg in enumerate(legs, start=1):
            if leg.tier not in known:
                raise line.error(line.fields[f"leg{i}.tier"], f"tier {leg.tier} is not defined for {cc.code}")
        cc.intra_spreads.append(Spread(line["priority"], line["rate"], legs))

    def _rE(self, line):
        cc = self._cc(line)
        legs = [SpreadLeg(ratio=line[f"leg{i}.ratio"], side=self._side(line, f"leg{i}.side"),
                          month=line[f"leg{i}.month"])
                for i in range(1, 5) if line[f"leg{i}.month"]]
        if len(legs) < 2:
            raise line.error(line.fields["leg1.month"], "a series spread needs at least two legs")
        cc.intra_spreads.append(Spread(line["priority"], line["rate"], legs))

    def _rB(self, line):
        key = (line.require("exchange"), line.require("code"), line.require("product_type"),
               line["futures_month"], line["option_month"])
        scan = ScanParameters(price_scan=line["price_scan"], vol_scan=line["vol_scan"], base_vol=line["base_vol"],
                              extreme_multiplier=line["extreme_multiplier"],
                              covered_fraction=line["covered_fraction"], rate=line["rate"],
                              time_to_expiry=line["time_to_expiry"], lookahead=line["lookahead"],
                              delta_scaling=line["delta_scaling"] or 1.0, expiry=line["expiry"],
                              underlying=line["underlying"], pricing_model=line["pricing_model"])
        if not 0 < scan.covered_fraction <= 1:
            raise line.error(line.fields["covered_fraction"], "extreme move covered fraction must be in (0, 1]")
        if scan.extreme_multiplier <= 0:
            raise line.error(line.fields["extreme_multiplier"], "extreme move multiplier must be positive")
        self.params.scan[key] = scan

    def _r81(self, line):
        self.pending = line

    _r83 = _r81

    def _r82(self, line):
        first = self.pending
        expected = {"82": "81", "84": "83"}[line.rid]
        if first is None or first.rid != expected:
            raise line.error(None, f"record {line.rid} without a preceding {expected}")
        lo, hi = CONTRACT_KEY_COLUMNS
        if first.text[lo - 1:hi] != line.text[lo - 1:hi]:
            raise line.error(line.fields["code"], f"contract does not match the {expected} record on line {first.number}")
        self.pending = None
        key = (first.require("exchange"), first.require("code"), first.require("product_type"))
        product = self.params.products.get(key)
        if product is None:
            raise first.error(first.fields["code"], f"product {key} has no type P record")
        if key not in self.ra_decimals:
            raise first.error(first.fields["code"], f"product {key} is in no combined commodity (type 2)")
        scale = 10.0 ** -self.ra_decimals[key]
        values = [first[f"a{i}"] for i in range(1, 10)] + [line[f"a{i}"] for i in range(10, N_SCENARIOS + 1)]
        right = first["right"]
        if product.is_option and right not in ("C", "P"):
            raise first.error(first.fields["right"], f"option right must be C or P, found {right!r}")
        if not 190001 <= first["futures_month"] <= 999912:
            raise first.error(first.fields["futures_month"], "futures contract month must be CCYYMM")
        self.params.contracts.append(Contract(
            exchange=key[0], code=key[1], product_type=key[2], futures_month=first["futures_month"],
            option_month=first["option_month"], right=right if product.is_option else "",
            strike=first["strike"] / 10 ** product.strike_decimals, underlying=first["underlying"],
            risk=tuple(v * scale for v in values), delta=line["delta"], vol=line["vol"],
            price=line["price"] / 10 ** product.settle_decimals))

    _r84 = _r82

    @staticmethod
    def _side(line: _Line, name: str) -> str:
        side = line[name]
        if side not in ("A", "B"):
            raise line.error(line.fields[name], f"spread side must be A or B, found {side!r}")
        return side


# ---- writer ------------------------------------------------------------------------------------

def _format(rid: str, values: dict) -> str:
    fields = LAYOUTS[rid]
    buf = [" "] * _WIDTHS[rid]
    buf[0:2] = rid
    for f in fields:
        if f.name not in values:
            continue
        value = values[f.name]
        if f.kind == "X":
            text = str(value)
            if len(text) > f.width:
                raise ValueError(f"record {rid} {f.columns}: {text!r} is longer than {f.width}")
            text = text.ljust(f.width)
        else:
            scaled = round(abs(value) * 10 ** f.decimals) if f.kind == "S" else round(value * 10 ** f.decimals)
            if scaled < 0 or scaled >= 10 ** f.width:
                raise ValueError(f"record {rid} {f.columns}: {value!r} does not fit")
            text = str(scaled).zfill(f.width)
            if f.kind == "S":
                buf[f.end] = "-" if value < 0 else "+"
        buf[f.start - 1:f.end] = text
    return "".join(buf).rstrip()


def write_pa2(params: SpanParams, path) -> None:
    """Write the model in the expanded positional format (risk arrays rounded to whole currency
    units; 83 / 84 records where a value needs more than 5 digits)."""
    Path(path).write_text("\n".join(format_pa2(params)) + "\n", encoding="ascii")


def format_pa2(params: SpanParams) -> list[str]:
    out = [_format("0 ", {"exchange_complex": params.exchange_complex, "business_date": params.business_date,
                          "settlement_flag": "S" if params.settlement else "I", "file_format": "U2"})]
    for acronym, code in params.exchanges.items():
        out.append(_format("1 ", {"exchange": acronym, "exchange_code": code}))
    for p in params.products.values():
        out.append(_format("P ", {"exchange": p.exchange, "code": p.code, "product_type": p.product_type,
                                  "name": p.name, "settle_decimals": p.settle_decimals,
                                  "strike_decimals": p.strike_decimals, "cvf": p.cvf, "currency": p.currency,
                                  "exercise": p.exercise}))
    for cc in params.combined.values():
        out.extend(_combined_records(cc))
    for key, s in params.scan.items():
        out.append(_format("B ", {"exchange": key[0], "code": key[1], "product_type": key[2],
                                  "futures_month": key[3], "option_month": key[4], "base_vol": s.base_vol,
                                  "vol_scan": s.vol_scan, "price_scan": s.price_scan,
                                  "extreme_multiplier": s.extreme_multiplier, "covered_fraction": s.covered_fraction,
                                  "rate": s.rate, "time_to_expiry": s.time_to_expiry, "lookahead": s.lookahead,
                                  "delta_scaling": s.delta_scaling, "expiry": s.expiry, "underlying": s.underlying,
                                  "pricing_model": s.pricing_model}))
    for group, members in params.groups.items():
        for start in range(0, len(members), 10):
            out.append(_format("5 ", {"group": group} | {f"cc{i + 1}.code": code
                                                          for i, code in enumerate(members[start:start + 10])}))
    for spread in params.inter_spreads:
        group = params.combined[spread.legs[0].cc].group if spread.legs[0].cc in params.combined else ""
        values = {"group": group, "priority": spread.priority, "credit_rate": spread.rate, "method": "10"}
        for i, leg in enumerate(spread.legs, start=1):
            exchange = params.combined[leg.cc].exchange if leg.cc in params.combined else ""
            values |= {f"leg{i}.exchange": exchange, f"leg{i}.cc": leg.cc, f"leg{i}.ratio": leg.ratio,
                       f"leg{i}.side": leg.side, f"leg{i}.required": "Y"}
        out.append(_format("6 ", values))
    products = params.products
    for c in params.contracts:
        out.extend(_contract_records(c, products[c.product_key]))
    return out


def _combined_records(cc: CombinedCommodity) -> list[str]:
    out = []
    for start in range(0, max(len(cc.products), 1), 6):     # six products per type 2 record
        values = {"exchange": cc.exchange, "cc": cc.code, "currency": cc.currency, "option_style": cc.option_style}
        for i, (_, code, ptype) in enumerate(cc.products[start:start + 6], start=1):
            values |= {f"product{i}.code": code, f"product{i}.product_type": ptype, f"product{i}.ra_decimals": 0}
        out.append(_format("2 ", values))
    tier_values = {"cc": cc.code, "intra_method": "10" if cc.intra_spreads else "",
                   "ratio_member": cc.init_ratio_member, "ratio_hedger": cc.init_ratio_hedger,
                   "ratio_spec": cc.init_ratio}
    for i, t in enumerate(cc.tiers, start=1):
        tier_values |= {f"tier{i}.number": t.number, f"tier{i}.start": t.start_month, f"tier{i}.end": t.end_month}
    out.append(_format("3 ", tier_values))
    spot = {"cc": cc.code, "delivery_method": "10" if cc.spot_months else "", "months": len(cc.spot_months),
            "som_rate": cc.som_rate, "som_method": cc.som_method}
    for i, s in enumerate(cc.spot_months, start=1):
        spot |= {f"spot{i}.number": i, f"spot{i}.month": s.month, f"spot{i}.spread_rate": s.spread_rate,
                 f"spot{i}.outright_rate": s.outright_rate}
    out.append(_format("4 ", spot))
    for spread in cc.intra_spreads:
        if spread.legs[0].tier:
            values = {"cc": cc.code, "method": "10", "priority": spread.priority, "legs": len(spread.legs),
                      "rate": spread.rate}
            for i, leg in enumerate(spread.legs, start=1):
                values |= {f"leg{i}.number": i, f"leg{i}.tier": leg.tier, f"leg{i}.ratio": leg.ratio,
                           f"leg{i}.side": leg.side}
            out.append(_format("C ", values))
        else:
            values = {"cc": cc.code, "priority": spread.priority, "rate": spread.rate}
            for i, leg in enumerate(spread.legs, start=1):
                values |= {f"leg{i}.month": leg.month, f"leg{i}.ratio": leg.ratio, f"leg{i}.side": leg.side}
            out.append(_format("E ", values))
    return out


def _contract_records(c: Contract, product: Product) -> list[str]:
    key = {"exchange": c.exchange, "code": c.code, "underlying": c.underlying, "product_type": c.product_type,
           "right": c.right, "futures_month": c.futures_month, "option_month": c.option_month,
           "strike": c.strike * 10 ** product.strike_decimals}
    wide = any(abs(round(v)) >= 10 ** 5 for v in c.risk)
    first, second = ("83", "84") if wide else ("81", "82")
    arrays = {f"a{i + 1}": round(v) for i, v in enumerate(c.risk)}
    tail = {"delta": c.delta, "vol": c.vol, "price": c.price * 10 ** product.settle_decimals}
    return [_format(first, key | {k: v for k, v in arrays.items() if int(k[1:]) <= 9}),
            _format(second, key | {k: v for k, v in arrays.items() if int(k[1:]) >= 10} | tail)]
