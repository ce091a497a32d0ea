"""The internal SPAN parameter model that every reader produces and every calculation consumes.

One `SpanParams` holds a point in time of one clearing organisation: products, contracts with their
16-scenario risk arrays (per one long contract, losses positive, in the combined commodity's
currency), combined commodities with their intra-commodity spreads, delivery (spot) month charges,
short option minimum and initial/maintenance ratio, and the inter-commodity spreads.
"""
from __future__ import annotations

from dataclasses import dataclass, field

N_SCENARIOS = 16

# The 16 standard SPAN scenarios: (fraction of the price scan range, volatility direction, extreme).
# Extreme scenarios move the price by extreme_multiplier x the scan range and count at the covered
# fraction; both numbers are parameters of the product (record B / the XML point definitions).
SCENARIOS: tuple[tuple[float, int, bool], ...] = (
    (0.0, +1, False), (0.0, -1, False),
    (1 / 3, +1, False), (1 / 3, -1, False), (-1 / 3, +1, False), (-1 / 3, -1, False),
    (2 / 3, +1, False), (2 / 3, -1, False), (-2 / 3, +1, False), (-2 / 3, -1, False),
    (1.0, +1, False), (1.0, -1, False), (-1.0, +1, False), (-1.0, -1, False),
    (1.0, 0, True), (-1.0, 0, True),
)

FUTURE, CALL, PUT = 0, 1, 2
OPTION_PRODUCT_TYPES = ("OOF", "OOP", "OOC")
SOM_GROSS, SOM_MAX_SIDE = "1", "2"   # short option minimum: all short options, or the larger side


class SpanFileError(ValueError):
    """A parameter file that cannot be loaded; names the file, the line or element, the record
    type and the column."""

    def __init__(self, path, where: str, record: str, column: str, message: str):
        self.path, self.where, self.record, self.column = str(path), where, record, column
        super().__init__(f"{path}: {where}, record {record!r}, {column}: {message}")


@dataclass
class Product:
    """A product (commodity code + product type) and how its prices are written."""
    exchange: str
    code: str
    product_type: str                 # FUT, OOF, ...
    name: str = ""
    currency: str = "USD"
    cvf: float = 1.0                  # contract value factor: currency per price point
    settle_decimals: int = 0          # decimal locator of prices in the positional file
    strike_decimals: int = 0
    exercise: str = ""                # AMER / EURO for options
    futures_style: bool = False       # options margined futures-style (no net option value)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.exchange, self.code, self.product_type)

    @property
    def is_option(self) -> bool:
        return self.product_type in OPTION_PRODUCT_TYPES


@dataclass
class ScanParameters:
    """Risk array calculation parameters of a futures contract or an option series (record B)."""
    price_scan: float                 # price scan range, currency per contract
    vol_scan: float = 0.0             # volatility scan range, absolute (0.05 = 5 vol points)
    base_vol: float = 0.0
    extreme_multiplier: float = 3.0
    covered_fraction: float = 0.33
    rate: float = 0.0                 # interest rate used to discount option values
    time_to_expiry: float = 0.0       # years
    lookahead: float = 0.0            # years the scenarios look ahead
    delta_scaling: float = 1.0
    expiry: int = 0                   # CCYYMMDD
    underlying: str = ""
    pricing_model: str = ""


@dataclass
class Contract:
    """One futures contract or option, with its risk array."""
    exchange: str
    code: str
    product_type: str
    futures_month: int                # CCYYMM of the (underlying) futures contract
    option_month: int = 0             # CCYYMM of the option, 0 for futures
    right: str = ""                   # "C" / "P" for options
    strike: float = 0.0
    underlying: str = ""
    risk: tuple[float, ...] = (0.0,) * N_SCENARIOS
    delta: float = 1.0                # composite delta per contract
    price: float = 0.0                # settlement price
    vol: float = 0.0                  # implied volatility

    @property
    def product_key(self) -> tuple[str, str, str]:
        return (self.exchange, self.code, self.product_type)

    @property
    def kind(self) -> int:
        return {"C": CALL, "P": PUT}.get(self.right, FUTURE)

    @property
    def series_key(self) -> tuple:
        """Key of the record B parameters that apply to this contract."""
        return (self.exchange, self.code, self.product_type, self.futures_month, self.option_month)

    @property
    def symbol(self) -> str:
        """The instrument symbol used in margintick tables: ESZ26, ESZ26C6000."""
        return contract_symbol(self.code, self.futures_month if self.kind == FUTURE else self.option_month,
                               self.right, self.strike)


MONTH_CODES = "FGHJKMNQUVXZ"


def contract_symbol(code: str, month: int, right: str = "", strike: float = 0.0) -> str:
    base = f"{code}{MONTH_CODES[month % 100 - 1]}{month // 100 % 100:02d}"
    return base if not right else f"{base}{right}{strike:g}"


@dataclass
class Tier:
    number: int
    start_month: int                  # CCYYMM, inclusive
    end_month: int


@dataclass
class SpreadLeg:
    """A leg of an intra- or inter-commodity spread: `ratio` deltas per spread on `side` A or B.
    Intra legs name a tier (tier > 0) or a single contract month (month > 0); inter legs name a
    combined commodity."""
    ratio: float
    side: str                         # "A" or "B": A legs long with B legs short, or the reverse
    tier: int = 0
    month: int = 0
    cc: str = ""


@dataclass
class Spread:
    priority: int
    rate: float                       # intra: charge per spread; inter: credit rate (fraction)
    legs: list[SpreadLeg]


@dataclass
class SpotMonth:
    month: int                        # CCYYMM of the delivery month
    spread_rate: float                # charge per delta of the month used in intra spreads
    outright_rate: float              # charge per delta of the month left outright


@dataclass
class CombinedCommodity:
    code: str
    exchange: str = ""
    currency: str = "USD"
    option_style: str = "P"           # "P" premium-style options (NOV applies), "F" futures-style
    products: list[tuple[str, str, str]] = field(default_factory=list)   # product keys
    tiers: list[Tier] = field(default_factory=list)
    intra_spreads: list[Spread] = field(default_factory=list)
    spot_months: list[SpotMonth] = field(default_factory=list)
    som_rate: float = 0.0
    som_method: str = SOM_GROSS
    init_ratio: float = 1.0           # initial / maintenance (speculator)
    init_ratio_member: float = 1.0
    init_ratio_hedger: float = 1.0
    group: str = ""


@dataclass
class SpanParams:
    """A whole parameter file: what every reader returns."""
    exchange_complex: str = ""
    business_date: int = 0            # CCYYMMDD
    settlement: bool = True
    source: str = ""
    products: dict[tuple[str, str, str], Product] = field(default_factory=dict)
    combined: dict[str, CombinedCommodity] = field(default_factory=dict)
    contracts: list[Contract] = field(default_factory=list)
    scan: dict[tuple, ScanParameters] = field(default_factory=dict)
    inter_spreads: list[Spread] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    exchanges: dict[str, str] = field(default_factory=dict)   # acronym -> 2-byte code
    skipped: dict[str, int] = field(default_factory=dict)     # record types read past, with counts

    def combined_of(self) -> dict[tuple[str, str, str], str]:
        """product key -> combined commodity code."""
        return {p: cc.code for cc in self.combined.values() for p in cc.products}
