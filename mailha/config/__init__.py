"""Configuration: TOML with keepalived's names, loaded into frozen dataclasses.

``load(path)`` returns a :class:`Config` or raises :class:`ConfigError` listing every
problem as a :class:`Diagnostic`; ``load_with_warnings`` also returns the warnings.
Cross-file and host checks are in :mod:`mailha.config.validate`.
"""

from mailha.config.errors import ConfigError, Diagnostic
from mailha.config.loader import load, load_with_warnings, loads, loads_with_warnings
from mailha.config.model import Config

__all__ = [
    "Config",
    "ConfigError",
    "Diagnostic",
    "load",
    "load_with_warnings",
    "loads",
    "loads_with_warnings",
]
