"""Back-testing the margin models against realised losses (issue 20). The statistics
(kupiec, christoffersen, traffic_light) are importable from here."""
from backtest.margins import BacktestError, daily_margins

__all__ = ["BacktestError", "daily_margins"]
try:                                    # stats needs scipy
    from backtest.stats import christoffersen, kupiec, traffic_light   # noqa: F401
    __all__ += ["kupiec", "christoffersen", "traffic_light"]
except ImportError:                     # pragma: no cover
    pass
