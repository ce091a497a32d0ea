"""Loading and validating the notifier's configuration (`config/notify.toml` plus command-line
endpoints): the channels, the routes from accounts to channels, the retry policy, the dashboard link."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from common.defaults import REPO_ROOT

CONFIG_PATH = REPO_ROOT / "config" / "notify.toml"
KINDS = ("smtp", "slack", "teams", "webhook", "log")
DEFAULT_ROUTE = "default"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Smtp:
    host: str = ""
    port: int = 25
    starttls: bool = False
    user: str = ""
    password: str = ""
    sender: str = "margintick@localhost"
    ca_file: str = ""                  # STARTTLS: a PEM file of the CAs to trust ("" = the system's)


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    kind: str
    to: tuple[str, ...] = ()          # smtp: the recipients
    url: str = ""                     # slack / teams / webhook
    path: str = ""                    # log


@dataclass(frozen=True)
class Delivery:
    max_attempts: int = 12
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    timeout_s: float = 5.0
    concurrency: int = 32
    remind_s: float = 900.0           # reminder of an open, unacknowledged episode every remind_s (0 = none)


@dataclass
class NotifyConfig:
    smtp: Smtp = field(default_factory=Smtp)
    channels: dict[str, ChannelSpec] = field(default_factory=dict)
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)    # account or "default" -> channels
    delivery: Delivery = field(default_factory=Delivery)
    dashboard: str = "http://127.0.0.1:8080/"

    def channels_for(self, account: str) -> tuple[str, ...]:
        """The channels an alert of `account` goes to: its route, else the default route."""
        return self.routes.get(account, self.routes.get(DEFAULT_ROUTE, ()))

    def add_channel(self, spec: ChannelSpec) -> None:
        """A channel given on the command line: it receives every alert (added to every route)."""
        self.channels[spec.name] = spec
        self.routes.setdefault(DEFAULT_ROUTE, ())
        self.routes = {k: (*v, spec.name) for k, v in self.routes.items()}


def _typed(where: str, value, kind, default):
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def parse_config(data: dict, where: str = "config/notify.toml") -> NotifyConfig:
    """A NotifyConfig from a parsed TOML document; ConfigError naming the key for anything wrong."""
    known = {"dashboard", "smtp", "channels", "routes", "delivery"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: {key}: unknown key (known: {', '.join(sorted(known))})")
    s = data.get("smtp", {})
    smtp = Smtp(**{k: _typed(f"{where}: smtp.{k}", s.get(k), type(getattr(Smtp, k)), getattr(Smtp, k))
                   for k in Smtp.__dataclass_fields__})
    for k in s:
        if k not in Smtp.__dataclass_fields__:
            raise ConfigError(f"{where}: smtp.{k}: unknown key")
    d = data.get("delivery", {})
    for k in d:
        if k not in Delivery.__dataclass_fields__:
            raise ConfigError(f"{where}: delivery.{k}: unknown key")
    delivery = Delivery(**{k: _typed(f"{where}: delivery.{k}", d.get(k), type(getattr(Delivery, k)),
                                     getattr(Delivery, k)) for k in Delivery.__dataclass_fields__})
    if delivery.max_attempts < 1 or delivery.concurrency < 1 or delivery.timeout_s <= 0 \
            or not 0 < delivery.backoff_min_s <= delivery.backoff_max_s or delivery.remind_s < 0:
        raise ConfigError(f"{where}: delivery: max_attempts and concurrency must be >= 1, timeout_s > 0, "
                          f"0 < backoff_min_s <= backoff_max_s and remind_s >= 0")
    channels = {}
    for name, c in data.get("channels", {}).items():
        kind = c.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}: channels.{name}.kind: {kind!r} is not one of {', '.join(KINDS)}")
        to = c.get("to", [])
        if isinstance(to, str):
            to = [to]
        if kind == "smtp" and not to:
            raise ConfigError(f"{where}: channels.{name}.to: an smtp channel needs recipients")
        if kind in ("slack", "teams", "webhook") and not str(c.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f"{where}: channels.{name}.url: an http(s) URL is needed, got {c.get('url')!r}")
        if kind == "log" and not c.get("path"):
            raise ConfigError(f"{where}: channels.{name}.path: a log channel needs a file path")
        channels[name] = ChannelSpec(name, kind, tuple(str(t) for t in to), str(c.get("url", "")),
                                     str(c.get("path", "")))
    routes = {}
    for account, names in data.get("routes", {}).items():
        if isinstance(names, str):
            names = [names]
        for n in names:
            if n not in channels:
                raise ConfigError(f"{where}: routes.{account}: unknown channel {n!r}")
        routes[account] = tuple(names)
    dashboard = _typed(f"{where}: dashboard", data.get("dashboard"), str, NotifyConfig.dashboard)
    if any(c.kind == "smtp" for c in channels.values()) and not smtp.host:
        raise ConfigError(f"{where}: smtp.host: smtp channels are configured but no SMTP server")
    return NotifyConfig(smtp, channels, routes, delivery, dashboard)


def load_config(path: str | Path | None) -> NotifyConfig:
    """The configuration in `path` (an empty one when path is None)."""
    if path is None:
        return NotifyConfig()
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e
    return parse_config(data, str(path))
