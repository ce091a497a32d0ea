"""Which class implements each model `kind` of config/calc.toml, and building the configured models.
A new margin model is a module implementing calc.margin_model.MarginModel and one line here."""
from __future__ import annotations

from calc.config import EngineConfig, ModelConfig
from calc.margin_model import MarginModel
from calc.span2_model import Span2Model
from calc.span_model import SpanModel
from calc.universe import Universe
from calc.var_model import VarModel

KINDS = {"parametric": VarModel, "historical": VarModel, "filtered_historical": VarModel, "span2": Span2Model}
SPAN = "span"          # the model of accounts whose reference data `model` is span (engine.span_file)


def build_model(config: ModelConfig, history, universe: Universe, engine: EngineConfig) -> MarginModel:
    """The `[models.NAME]` model, built from the daily price history."""
    return KINDS[config.kind].from_history(config, history, universe, engine)


def build_models(config: EngineConfig, history, universe: Universe) -> dict[str, MarginModel]:
    """Every configured model, and SPAN under the engine's parameter file."""
    models = {n: build_model(m, history, universe, config) for n, m in config.models.items()}
    models[SPAN] = SpanModel(SPAN, config.span_file)
    return models
