"""Kernel (IPVS) test fixtures: every test gets a network namespace of its own.

IPVS tables are per network namespace, so a test running in a fresh namespace
starts from an empty table and can flush it at will without touching the host's
(or another test's) services, whether the suite runs in the VM or natively.
The namespace is entered with unshare(2) by the test thread itself (the event loop
runs there too), so the netlink socket, ``ipvsadm`` and ``ip`` all see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import netns as lab_netns
from mailha.lvs.netlink import IpvsNetlink

_names = itertools.count()


def run(*argv: str, check: bool = True) -> str:
    """Run a command in the current namespace (bounded), for synchronous fixtures."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


class Ipvsadm:
    """ipvsadm, run from the test's namespace: the independent view of the table."""

    async def __call__(self, *args: str, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            "ipvsadm",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                out, err = await proc.communicate(None if stdin is None else stdin.encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise AssertionError(f"ipvsadm {' '.join(args)} failed: {err.decode()}")
        return out.decode()

    async def save(self) -> list[str]:
        """``ipvsadm -S -n`` as a sorted list of rules."""
        return sorted(line for line in (await self("-S", "-n")).splitlines() if line.strip())


@pytest.fixture
def ipvsadm() -> Ipvsadm:
    return Ipvsadm()


@pytest.fixture
def private_netns() -> Iterator[None]:
    """Move the test thread into a new, empty network namespace for the test."""
    with lab_netns.private():
        yield


@pytest.fixture
async def ipvs(private_netns: None) -> AsyncIterator[IpvsNetlink]:
    adapter = await IpvsNetlink.open(request_timeout=20.0)
    try:
        yield adapter
    finally:
        await adapter.close()


# ------------------------------------------------------------------ NAT topology


@dataclass
class NatLab:
    """client netns -- director (the test's netns, VIP on lo) -- server netns."""

    client_ns: str
    server_ns: str
    vip: str = "10.99.3.1"
    client_ip: str = "10.99.1.2"
    server_ip: str = "10.99.2.2"

    @contextlib.contextmanager
    def inside(self, netns: str) -> Iterator[None]:
        """Run a block (that must not await) in a named namespace."""
        with lab_netns.entered(netns):
            yield

    def tcp_socket(self, netns: str) -> socket.socket:
        with self.inside(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock


@pytest.fixture
def nat_lab(private_netns: None) -> Iterator[NatLab]:
    """Client and real server in their own namespaces, routed through the director."""
    tag = f"{os.getpid() % 100000}-{next(_names)}"
    lab = NatLab(client_ns=f"mhD-c-{tag}", server_ns=f"mhD-s-{tag}")
    created: list[str] = []
    try:
        for ns in (lab.client_ns, lab.server_ns):
            run("ip", "netns", "add", ns)
            created.append(ns)
        script = f"""
            link add mhDdc type veth peer name mhDce netns {lab.client_ns}
            link add mhDds type veth peer name mhDse netns {lab.server_ns}
            addr add 10.99.1.1/24 dev mhDdc
            addr add 10.99.2.1/24 dev mhDds
            addr add {lab.vip}/32 dev lo
            link set mhDdc up
            link set mhDds up
        """
        _ip_batch(script)
        for ns, dev, addr, gw in (
            (lab.client_ns, "mhDce", f"{lab.client_ip}/24", "10.99.1.1"),
            (lab.server_ns, "mhDse", f"{lab.server_ip}/24", "10.99.2.1"),
        ):
            _ip_batch(
                f"""
                link set lo up
                addr add {addr} dev {dev}
                link set {dev} up
                route add default via {gw}
                """,
                netns=ns,
            )
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        yield lab
    finally:
        for ns in created:
            run("ip", "netns", "del", ns, check=False)


def _ip_batch(script: str, netns: str | None = None) -> None:
    lines = "\n".join(line.strip() for line in script.strip().splitlines()) + "\n"
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input=lines, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"ip -batch failed: {done.stderr}")
