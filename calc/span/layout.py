"""Record layouts of the CME expanded positional SPAN risk parameter file (".pa2"), one table shared
by the reader and the writer.

Columns are 1-based and inclusive, as in the CME layout pages. Field kinds: "X" text, "N" an unsigned
number with `decimals` implied decimals (blank reads as 0), "S" a signed number: digits in
start..end and its sign ("+", "-" or blank) in column end + 1. Charge rates (intra spreads, spot
months, short option minimum) are whole currency units; rates and ratios that are fractions carry
implied decimals.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    start: int
    end: int
    kind: str = "X"
    decimals: int = 0

    @property
    def width(self) -> int:
        return self.end - self.start + 1

    @property
    def columns(self) -> str:
        last = self.end + 1 if self.kind == "S" else self.end
        return f"columns {self.start}-{last} ({self.name})"


def _blocks(prefix: str, first: int, size: int, count: int, parts) -> list[Field]:
    """Repeated groups: `parts` = [(name, offset, width, kind, decimals)], named prefix1.name ..."""
    out = []
    for i in range(count):
        base = first + i * size
        for name, offset, width, kind, decimals in parts:
            out.append(Field(f"{prefix}{i + 1}.{name}", base + offset, base + offset + width - 1, kind, decimals))
    return out


_CONTRACT_KEY = [
    Field("exchange", 3, 5), Field("code", 6, 15), Field("underlying", 16, 25),
    Field("product_type", 26, 28), Field("right", 29, 29), Field("futures_month", 30, 35, "N"),
    Field("futures_day", 36, 37), Field("option_month", 39, 44, "N"), Field("option_day", 45, 46),
    Field("strike", 48, 54, "N"),
]


def _arrays(first_index: int, count: int, width: int) -> list[Field]:
    return [Field(f"a{first_index + i}", 55 + i * (width + 1), 55 + i * (width + 1) + width - 1, "S")
            for i in range(count)]


LAYOUTS: dict[str, list[Field]] = {
    # exchange complex header
    "0 ": [Field("exchange_complex", 3, 8), Field("business_date", 9, 16, "N"), Field("settlement_flag", 17, 17),
           Field("file_id", 18, 19), Field("business_time", 20, 23), Field("created_date", 24, 31),
           Field("created_time", 32, 35), Field("file_format", 36, 37), Field("gross_net", 38, 38),
           Field("limit_option_value", 39, 39), Field("business_function", 40, 44)],
    # exchange header
    "1 ": [Field("exchange", 3, 5), Field("exchange_code", 8, 9)],
    # price conversion parameters of a product
    "P ": [Field("exchange", 3, 5), Field("code", 6, 15), Field("product_type", 16, 18), Field("name", 19, 33),
           Field("settle_decimals", 34, 36, "N"), Field("strike_decimals", 37, 39, "N"),
           Field("cvf", 42, 55, "N", 7), Field("currency", 66, 68), Field("exercise", 76, 79)],
    # combined commodity definition, with up to six products and their risk array decimal locators
    "2 ": [Field("exchange", 3, 5), Field("cc", 7, 12), Field("currency", 14, 16), Field("option_style", 18, 18)]
          + _blocks("product", 23, 16, 6, [("code", 0, 10, "X", 0), ("product_type", 10, 3, "X", 0),
                                           ("ra_decimals", 13, 1, "N", 0), ("ra_decimals_sign", 14, 1, "X", 0)]),
    # intra-commodity tiers and initial / maintenance ratios (member, hedger, speculator)
    "3 ": [Field("cc", 3, 8), Field("intra_method", 9, 10)]
          + _blocks("tier", 11, 14, 4, [("number", 0, 2, "N", 0), ("start", 2, 6, "N", 0), ("end", 8, 6, "N", 0)])
          + [Field("ratio_member", 69, 72, "N", 3), Field("ratio_hedger", 73, 76, "N", 3),
             Field("ratio_spec", 77, 80, "N", 3)],
    # delivery (spot) month charges (method 10) and the short option minimum
    "4 ": [Field("cc", 3, 8), Field("delivery_method", 9, 10), Field("months", 11, 12, "N")]
          + _blocks("spot", 13, 22, 2, [("number", 0, 2, "N", 0), ("month", 2, 6, "N", 0),
                                        ("spread_rate", 8, 7, "N", 0), ("outright_rate", 15, 7, "N", 0)])
          + [Field("som_rate", 63, 69, "N"), Field("som_method", 79, 79)],
    # combined commodity groups
    "5 ": [Field("group", 3, 5)] + _blocks("cc", 13, 6, 10, [("code", 0, 6, "X", 0)]),
    # inter-commodity spreads
    "6 ": [Field("group", 3, 5), Field("priority", 6, 9, "N"), Field("credit_rate", 10, 16, "N", 6)]
          + _blocks("leg", 17, 18, 4, [("exchange", 0, 3, "X", 0), ("required", 3, 1, "X", 0),
                                       ("cc", 4, 6, "X", 0), ("ratio", 10, 7, "N", 4), ("side", 17, 1, "X", 0)])
          + [Field("method", 89, 90)],
    # tier to tier intra-commodity spreads
    "C ": [Field("cc", 3, 8), Field("method", 9, 10), Field("priority", 11, 12, "N"), Field("legs", 13, 14, "N"),
           Field("rate", 15, 21, "N")]
          + _blocks("leg", 22, 7, 4, [("number", 0, 2, "N", 0), ("tier", 2, 2, "N", 0),
                                      ("ratio", 4, 2, "N", 0), ("side", 6, 1, "X", 0)]),
    # series to series (month to month) intra-commodity spreads
    "E ": [Field("cc", 3, 8), Field("priority", 9, 13, "N"), Field("rate", 14, 20, "N")]
          + _blocks("leg", 21, 14, 4, [("month", 0, 6, "N", 0), ("ratio", 7, 6, "N", 4), ("side", 13, 1, "X", 0)]),
    # risk array calculation parameters of a futures contract or an option series
    "B ": [Field("exchange", 3, 5), Field("code", 6, 15), Field("product_type", 16, 18),
           Field("futures_month", 19, 24, "N"), Field("futures_day", 25, 26), Field("option_month", 28, 33, "N"),
           Field("option_day", 34, 35), Field("base_vol", 37, 44, "N", 6), Field("vol_scan", 45, 52, "N", 6),
           Field("price_scan", 53, 57, "N"), Field("extreme_multiplier", 58, 62, "N", 2),
           Field("covered_fraction", 63, 67, "N", 4), Field("rate", 68, 72, "N", 4),
           Field("time_to_expiry", 73, 79, "N", 6), Field("lookahead", 80, 85, "N", 6),
           Field("delta_scaling", 86, 91, "N", 4), Field("expiry", 92, 99, "N"), Field("underlying", 100, 109),
           Field("pricing_model", 110, 111)],
    # risk arrays: 81 + 82 with 5-digit values, 83 + 84 with 8-digit values
    "81": _CONTRACT_KEY + _arrays(1, 9, 5),
    "82": _CONTRACT_KEY + _arrays(10, 7, 5) + [Field("delta", 97, 101, "S", 4), Field("vol", 103, 110, "N", 6),
                                               Field("price", 111, 117, "S")],
    "83": _CONTRACT_KEY + _arrays(1, 9, 8),
    "84": _CONTRACT_KEY + _arrays(10, 7, 8) + [Field("delta", 118, 122, "S", 4), Field("vol", 124, 131, "N", 6),
                                               Field("price", 132, 138, "S")],
}

# The columns that identify a contract: an 82 / 84 record must repeat those of its 81 / 83.
CONTRACT_KEY_COLUMNS = (3, 54)
