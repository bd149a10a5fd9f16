"""Without the ip_vs module, opening the adapter says what to do (or does it).

Resolving the "IPVS" generic-netlink family makes the kernel itself try to load the
module (genl's ``request_module("net-pf-16-proto-16-family-IPVS")``), so the error
is only seen where module loading is impossible. The test makes it so by pointing
the kernel's modprobe helper at /bin/false, which is why it only runs in the
throw-away VM.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailha.lvs.errors import IpvsUnavailableError
from mailha.lvs.netlink import IpvsNetlink

pytestmark = pytest.mark.kernel

MODPROBE_HELPER = Path("/proc/sys/kernel/modprobe")


def _loaded_ipvs_modules() -> list[str]:
    lines = Path("/proc/modules").read_text().splitlines()
    return [line.split()[0] for line in lines if line.startswith("ip_vs")]


@pytest.fixture
def ip_vs_unloaded(private_netns: None) -> Iterator[None]:
    """ip_vs unloaded, and the kernel unable to load modules on its own."""
    if os.environ.get("MAILHA_IN_VM") != "1":
        pytest.skip("unloads ip_vs and disables module autoloading: VM only")
    helper = MODPROBE_HELPER.read_text()
    try:
        MODPROBE_HELPER.write_text("/bin/false\n")
        for module in sorted(_loaded_ipvs_modules(), key=len, reverse=True):  # ip_vs last
            subprocess.run(["modprobe", "-r", module], capture_output=True, timeout=30)
        if _loaded_ipvs_modules():
            pytest.skip("ip_vs is in use and cannot be unloaded")
        yield
    finally:
        MODPROBE_HELPER.write_text(helper)


async def test_missing_module_is_reported_then_loaded(ip_vs_unloaded: None) -> None:
    with pytest.raises(IpvsUnavailableError, match=r"`modprobe ip_vs`"):
        await IpvsNetlink.open(load_module=False)
    # load_module=True runs modprobe itself, which does not need the kernel's helper.
    async with await IpvsNetlink.open() as ipvs:
        assert len(await ipvs.observe()) == 0
    assert "ip_vs" in _loaded_ipvs_modules()
