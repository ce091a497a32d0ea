"""Loads a QuickFIX session settings file (config/fix/*.cfg), resolving paths and applying overrides.

The file is QuickFIX's own format ([DEFAULT] and [SESSION] sections of key=value; whole-line `#`
comments). Before QuickFIX reads it, this module
- resolves a relative DataDictionary / TransportDataDictionary / AppDataDictionary against the
  file's folder, else against the data dictionaries installed with the quickfix package
  (<venv>/share/quickfix/FIX44.xml, FIX42.xml, FIX50SP2.xml, FIXT11.xml, ...);
- resolves a relative FileStorePath / FileLogPath against the state directory (var/fix by default);
- applies overrides (e.g. the port from the command line) to the [DEFAULT] section.
The resolved copy is written to <state_dir>/<name>.resolved.cfg, which is what QuickFIX loads.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import quickfix as fix

DICTIONARY_KEYS = ("DataDictionary", "TransportDataDictionary", "AppDataDictionary")
STATE_PATH_KEYS = ("FileStorePath", "FileLogPath")


class SettingsError(ValueError):
    """The settings file is missing, malformed, or names a data dictionary that does not exist."""


def quickfix_spec_dir() -> Path:
    """Where pip installed the FIX data dictionaries shipped with quickfix."""
    return Path(sysconfig.get_path("data")) / "share" / "quickfix"


def _resolve_dictionary(value: str, config_dir: Path, where: str) -> str:
    path = Path(value)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [config_dir / path, quickfix_spec_dir() / path]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    raise SettingsError(f"{where}: data dictionary {value!r} not found (looked in "
                        f"{', '.join(str(c.parent) for c in candidates)})")


def resolve_settings_text(text: str, config_path: Path, state_dir: Path,
                          overrides: dict[str, str] | None = None) -> str:
    """The settings text with paths resolved and `overrides` set in [DEFAULT] (pure, for tests)."""
    out: list[str] = []
    section = None
    pending = dict(overrides or {})
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{config_path}:{lineno}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if line not in ("[DEFAULT]", "[SESSION]"):
                raise SettingsError(f"{where}: unknown section {line} (expected [DEFAULT] or [SESSION])")
            if section == "[DEFAULT]":
                out.extend(f"{k}={v}" for k, v in pending.items())
                pending.clear()
            section = line
            out.append(line)
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not key:
            raise SettingsError(f"{where}: expected key=value, got {raw!r}")
        if section is None:
            raise SettingsError(f"{where}: {key} is outside any [DEFAULT] or [SESSION] section")
        if section == "[DEFAULT]" and key in pending:
            value = pending.pop(key)
        if key in DICTIONARY_KEYS:
            value = _resolve_dictionary(value, config_path.parent, where)
        elif key in STATE_PATH_KEYS and not Path(value).is_absolute():
            value = str((state_dir / value).resolve())
        out.append(f"{key}={value}")
    if pending:
        if section is None:
            out.append("[DEFAULT]")
        elif section != "[DEFAULT]":
            raise SettingsError(f"{config_path}: overrides {sorted(pending)} need a [DEFAULT] section first")
        out.extend(f"{k}={v}" for k, v in pending.items())
    return "\n".join(out) + "\n"


def load_settings(config_path: str | Path, state_dir: str | Path,
                  overrides: dict[str, str] | None = None) -> fix.SessionSettings:
    """QuickFIX SessionSettings of `config_path`, resolved (see the module docstring)."""
    config_path, state_dir = Path(config_path), Path(state_dir)
    try:
        text = config_path.read_text()
    except OSError as e:
        raise SettingsError(f"cannot read FIX settings {config_path}: {e.strerror}") from None
    state_dir.mkdir(parents=True, exist_ok=True)
    resolved = state_dir / f"{config_path.stem}.resolved.cfg"
    resolved.write_text(resolve_settings_text(text, config_path, state_dir, overrides))
    try:
        return fix.SessionSettings(str(resolved))
    except fix.ConfigError as e:
        raise SettingsError(f"{config_path}: {e}") from None
