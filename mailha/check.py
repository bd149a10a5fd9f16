"""``mailha check FILE...``: the command around the config checks (one file, the files
against each other, and with ``--host`` this machine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mailha.bgp.explain import explain
from mailha.config import Config, ConfigError, Diagnostic, load_with_warnings, validate
from mailha.hostprobe import check_this_host

__all__ = ["check_command"]


def check_command(paths: Sequence[Path], *, out: TextIO, host_checks: bool) -> int:
    """``mailha check FILE...``: print every diagnostic and a summary; 0 if no errors.

    Each file is loaded on its own; files that load are then checked against each other
    (:func:`~mailha.config.validate.check_peers`) and, with ``host_checks``, against
    this machine, where missing scripts are warnings (the file may be meant for
    another node).
    """
    found: list[Diagnostic] = []
    configs: list[Config] = []
    for path in paths:
        try:
            config, warnings = load_with_warnings(path)
        except ConfigError as exc:
            found += exc.diagnostics
            continue
        configs.append(config)
        found += warnings
        if host_checks:
            found += check_this_host(config, script_severity="warning")
    if len(configs) > 1:
        found += validate.check_peers(configs)
    found.sort(key=Diagnostic.sort_key)
    for diagnostic in found:
        print(diagnostic, file=out)
    for config in configs:
        for line in explain(config):
            print(line, file=out)
    errors = sum(d.is_error for d in found)
    warnings_ = len(found) - errors
    files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
    if not found:
        print(f"{files} checked: OK", file=out)
    else:
        print(f"{files} checked: {errors} error{'s' if errors != 1 else ''}, "
              f"{warnings_} warning{'s' if warnings_ != 1 else ''}", file=out)
    return 1 if errors else 0
