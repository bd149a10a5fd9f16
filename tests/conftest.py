"""Shared pytest policy: root/netns and kernel tests never skip silently in CI.

Tests marked ``root`` need root and network namespaces; tests marked ``kernel`` need
the ip_vs module (natively, or inside the project's VM harness, ``tests/vm/vmrun``,
which ``scripts/test`` uses automatically when the running kernel has no IPVS).
In CI (``CI=true``) a test that would be skipped for lack of either is an error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def _have_root() -> bool:
    return os.geteuid() == 0 and Path("/proc/self/ns/net").exists()


def _have_ipvs() -> bool:
    if Path("/proc/net/ip_vs").exists():
        return True
    if os.geteuid() != 0:
        return False
    subprocess.run(["modprobe", "ip_vs"], capture_output=True, check=False)
    return Path("/proc/net/ip_vs").exists()


_ipvs_ok: bool | None = None


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _ipvs_ok
    if "root" in item.keywords and not _have_root():
        _missing("it needs root and network namespaces")
    if "kernel" in item.keywords:
        if _ipvs_ok is None:
            _ipvs_ok = _have_ipvs()
        if not _ipvs_ok:
            _missing("the running kernel has no ip_vs: run scripts/test, which boots the VM")
