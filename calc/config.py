"""The calc engine's configuration (config/calc.toml): margin models, CCP -> model mapping, stress
scenarios, alert and publishing settings. Loading validates everything and names the bad key."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from calc.covariance import COVARIANCE_METHODS
from calc.scenarios import HOLDING_METHODS
from calc.stress import StressScenario
from common.alerts import FIRING
from common.defaults import REPO_ROOT

CONFIG_PATH = REPO_ROOT / "config" / "calc.toml"
MODEL_KINDS = ("parametric", "historical", "filtered_historical", "span2")   # calc.registry.KINDS
MEASURES = ("var", "es")


class ConfigError(ValueError):
    """The calc configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class ModelConfig:
    """One margin model with its parameters (a `[models.NAME]` table)."""
    name: str
    kind: str                       # parametric | historical | filtered_historical | span2
    confidence: float = 0.99
    horizon_days: int = 1           # holding period / margin period of risk
    holding: str = "overlap"        # overlapping h-day returns or sqrt scaling (scenario models)
    lookback_days: int = 504
    decay: float = 0.97             # EWMA decay (filtered historical; parametric with covariance=ewma)
    covariance: str = "equal"       # parametric: equal-weight or EWMA
    measure: str = "var"            # what the initial margin is based on: var or es
    apc_buffer: float = 0.0         # anti-procyclicality buffer, e.g. 0.25 (EMIR)
    liquidity_participation: float = 0.0   # liquidity add-on: share of ADV tradable per day (0 = no add-on)
    stress_scenarios: tuple = ()    # span2: the [stress.NAME] scenarios of its stress risk component


@dataclass(frozen=True)
class AlertConfig:
    """Alert settings (`[alerts]`): how many drivers an alert names and which stress it runs."""
    top_drivers: int = 5
    stress_scenario: str = ""       # scenario run for every alert and checked against the buffer ("" = none)
    stress_interval_s: float = 1.0  # the stress check runs at most this often per account (event time)
    severity_call: str = "high"
    severity_threshold: str = "warn"


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine reads from config/calc.toml."""
    models: dict[str, ModelConfig]
    ccp_models: dict[str, list[str]]            # CCP -> model names, first = primary (alerts)
    default_models: list[str]                   # for a CCP not listed
    stress: dict[str, StressScenario]
    alerts: AlertConfig
    max_stale_ms: float = 100.0                 # a changed margin is published within this interval
    check_interval_s: float = 60.0              # periodic full recompute vs the incremental state
    drift_tolerance: float = 0.0
    history: str = ""                           # folder of the price history ("" = data/history)
    vol_floor: bool = True                      # intraday vol only ever scales scenarios up
    span_file: str = ""                         # SPAN parameters for accounts whose model is span
    path: str = ""

    def models_for(self, ccp: str) -> list[ModelConfig]:
        """The models of an account cleared at `ccp`, primary first."""
        return [self.models[n] for n in self.ccp_models.get(ccp, self.default_models)]


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def _typed(table: dict, key: str, kind: type, where: str, default=None):
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    _check(isinstance(value, kind) and not (kind is int and isinstance(value, bool)),
           f"{where}.{key}", f"expected {kind.__name__}, got {value!r}")
    return value


def _model(name: str, table: dict, where: str) -> ModelConfig:
    known = set(ModelConfig.__dataclass_fields__) - {"name"}
    extra = set(table) - known
    _check(not extra, where, f"unknown keys {sorted(extra)}")
    d = ModelConfig(name=name, kind=_typed(table, "kind", str, where))
    if isinstance(table.get("stress_scenarios"), list):
        table = {**table, "stress_scenarios": tuple(table["stress_scenarios"])}
    kwargs = {k: _typed(table, k, type(getattr(d, k)), where, getattr(d, k)) for k in known}
    m = ModelConfig(name=name, **kwargs)
    _check(m.kind in MODEL_KINDS, f"{where}.kind", f"{m.kind!r} is not one of {MODEL_KINDS}")
    _check(m.measure in MEASURES, f"{where}.measure", f"{m.measure!r} is not one of {MEASURES}")
    _check(m.covariance in COVARIANCE_METHODS, f"{where}.covariance", f"{m.covariance!r} not in {COVARIANCE_METHODS}")
    _check(m.holding in HOLDING_METHODS, f"{where}.holding", f"{m.holding!r} not in {HOLDING_METHODS}")
    _check(0.5 < m.confidence < 1, f"{where}.confidence", f"{m.confidence} not in (0.5, 1)")
    _check(m.horizon_days >= 1, f"{where}.horizon_days", "must be >= 1")
    _check(m.lookback_days >= 20, f"{where}.lookback_days", "must be >= 20")
    _check(0 < m.decay < 1, f"{where}.decay", "must be in (0, 1)")
    _check(m.apc_buffer == 0 or m.apc_buffer >= 0.25, f"{where}.apc_buffer", "0 (none) or at least 0.25 (EMIR)")
    _check(0 <= m.liquidity_participation <= 1, f"{where}.liquidity_participation", "must be in [0, 1]")
    return m


def load_model_set(path: str | Path) -> dict[str, ModelConfig]:
    """The `[models.NAME]` tables of a VaR parameter file (calc.toml format): a CCP's new model
    parameters, taking effect through a `paramfile` row of kind `var`."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e
    tables = data.get("models", {})
    _check(isinstance(tables, dict) and bool(tables), str(path), "no [models.NAME] table")
    return {n: _model(n, t, f"{path}: models.{n}") for n, t in tables.items()}


def parse_config(data: dict, path: str = "<config>") -> EngineConfig:
    """Builds an EngineConfig from a parsed TOML document; ConfigError names the bad key."""
    engine = data.get("engine", {})
    models_table = data.get("models", {})
    _check(bool(models_table), path, "no [models.NAME] table")
    models = {n: _model(n, t, f"{path}: models.{n}") for n, t in models_table.items()}
    ccp_models: dict[str, list[str]] = {}
    for ccp, t in data.get("ccp", {}).items():
        names = t.get("models")
        _check(isinstance(names, list) and bool(names), f"{path}: ccp.{ccp}.models", "expected a list of model names")
        for n in names:
            _check(n in models, f"{path}: ccp.{ccp}.models", f"unknown model {n!r}")
        ccp_models[ccp] = names
    default_models = engine.get("default_models", [next(iter(models))])
    for n in default_models:
        _check(n in models, f"{path}: engine.default_models", f"unknown model {n!r}")
    stress = {}
    for n, t in data.get("stress", {}).items():
        try:
            stress[n] = StressScenario.from_config({"name": n, **t})
        except ValueError as e:
            raise ConfigError(f"{path}: stress.{n}: {e}") from None
    alerts_t = data.get("alerts", {})
    alerts = AlertConfig(
        top_drivers=_typed(alerts_t, "top_drivers", int, f"{path}: alerts", 5),
        stress_scenario=_typed(alerts_t, "stress_scenario", str, f"{path}: alerts", ""),
        stress_interval_s=_typed(alerts_t, "stress_interval_s", float, f"{path}: alerts", 1.0),
        severity_call=_typed(alerts_t, "severity_call", str, f"{path}: alerts", "high"),
        severity_threshold=_typed(alerts_t, "severity_threshold", str, f"{path}: alerts", "warn"),
    )
    for key in ("severity_call", "severity_threshold"):
        _check(getattr(alerts, key) in FIRING, f"{path}: alerts.{key}", f"{getattr(alerts, key)!r} is not one of {FIRING}")
    _check(not alerts.stress_scenario or alerts.stress_scenario in stress, f"{path}: alerts.stress_scenario",
           f"unknown stress scenario {alerts.stress_scenario!r}")
    for n, m in models.items():
        unknown = [s for s in m.stress_scenarios if s not in stress]
        _check(not unknown, f"{path}: models.{n}.stress_scenarios", f"unknown stress scenarios {unknown}")
        _check(m.kind == "span2" or not m.stress_scenarios, f"{path}: models.{n}.stress_scenarios",
               "only a span2 model has a stress risk component")
    w = f"{path}: engine"
    cfg = EngineConfig(
        models=models, ccp_models=ccp_models, default_models=list(default_models), stress=stress,
        alerts=alerts,
        max_stale_ms=_typed(engine, "max_stale_ms", float, w, 100.0),
        check_interval_s=_typed(engine, "check_interval_s", float, w, 60.0),
        drift_tolerance=_typed(engine, "drift_tolerance", float, w, 0.0),
        history=_typed(engine, "history", str, w, ""),
        vol_floor=_typed(engine, "vol_floor", bool, w, True),
        span_file=_typed(engine, "span_file", str, w, ""),
        path=path,
    )
    _check(cfg.max_stale_ms > 0 and cfg.check_interval_s > 0 and cfg.drift_tolerance >= 0, w,
           "max_stale_ms and check_interval_s must be > 0, drift_tolerance >= 0")
    return cfg


def load_config(path: str | Path | None = None) -> EngineConfig:
    """Reads and validates config/calc.toml (or `path`)."""
    p = Path(path) if path else CONFIG_PATH
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p}: {e}") from e
    return parse_config(data, str(p))
