"""A bounded protocol-112 junk flood for the lab (issue 14): what a VRRP backup must shrug off.

The mix (:func:`flood_mix`, pure) is what an attacker on the segment, or a broken
router, can send a backup:

* from **non-peer** sources (the attacker's own address and spoofed addresses of the
  subnet): random bytes, and *well-formed* adverts for the instance's VRID with
  priority 0 ("master releasing: take over now") or 255.  A unicast backup must ignore
  them all; with mailha's kernel filter they never reach the daemon;
* **spoofing the master's own address** (so they pass any source filter): adverts
  saying priority 0 but mutated so that RFC 5798 section 7.1 rejects them -- bad
  checksum, another VRID, TTL 64, version 4, truncated.  Each is labelled with the
  ``mailha_vrrp_receive_errors_total`` reason it must be counted under.

:func:`flood` sends a mix at a fixed rate through an ``IP_HDRINCL`` raw socket, bounded
by a packet count *and* a duration, and returns what it actually sent (a Python sender
may not reach the asked rate on a loaded host; callers print the achieved rate).  Run
in the attacker's namespace as ``python -m lab.flood ...``; it prints one JSON
line.  Only ever aim it at addresses inside lab namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab import netns
from mailha.vrrp.packet import Advert, build_ipv4_packet, encode_advert

__all__ = ["FloodResult", "Junk", "flood", "flood_in", "flood_mix"]

#: Labels of the packets spoofing the master, with the receive-error reason each must
#: be counted under by the backup.
SPOOFED_REASONS = {
    "spoof_checksum": "checksum",
    "spoof_vrid": "vrid",
    "spoof_ttl": "ttl",
    "spoof_version": "version",
    "spoof_truncated": "truncated",
}
#: At most this many seconds, whatever the caller asks: the flood must stop by itself.
MAX_SECONDS = 120.0

_CHECKOUT = str(Path(__file__).resolve().parents[1])


@dataclass(frozen=True, slots=True)
class Junk:
    """One packet of the mix: a label (what it is) and the full IPv4 packet."""

    label: str
    packet: bytes


@dataclass(frozen=True, slots=True)
class FloodResult:
    """What :func:`flood` did: packets per label, send errors, wall time."""

    sent: dict[str, int]
    errors: int
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def flood_mix(
    *,
    master: IPv4Address,
    target: IPv4Address,
    attacker: IPv4Address,
    network: IPv4Network,
    vrid: int,
    vip: IPv4Address,
    spoofed_per_100: int = 10,
    seed: int = 14,
) -> list[Junk]:
    """100 packets: ``100 - spoofed_per_100`` from non-peers, the rest spoofing ``master``.

    Deterministic for a given ``seed``.  Non-peer sources are the attacker and spoofed
    hosts .100-.199 of ``network`` (never ``master`` or ``target``).
    """
    if not 0 <= spoofed_per_100 <= 100:
        raise ValueError("spoofed_per_100 must be 0..100")
    rng = random.Random(seed)
    hosts = [network.network_address + h for h in range(100, 200)]
    sources = [attacker, *(h for h in hosts if h not in (master, target))]

    def advert(src: IPv4Address, priority: int, vrid_: int = vrid) -> bytes:
        return encode_advert(
            Advert(version=2, vrid=vrid_, priority=priority, max_advert_int=1.0,
                   addresses=(vip,)),
            src=src, dst=target,
        )

    mix: list[Junk] = []
    kinds = ("nonpeer_random", "nonpeer_release", "nonpeer_preempt")
    for i in range(100 - spoofed_per_100):
        src = sources[i % len(sources)]
        kind = kinds[i % len(kinds)]
        if kind == "nonpeer_random":
            payload = rng.randbytes(rng.randrange(8, 64))
        else:
            payload = advert(src, 0 if kind == "nonpeer_release" else 255)
        mix.append(Junk(kind, build_ipv4_packet(src, target, 255, 112, payload)))
    release = advert(master, 0)
    mutations = {
        "spoof_checksum": (255, release[:6] + bytes([release[6] ^ 0x5A]) + release[7:]),
        "spoof_vrid": (255, advert(master, 0, vrid_=vrid + 1 if vrid < 255 else 1)),
        "spoof_ttl": (64, release),
        "spoof_version": (255, bytes([0x41]) + release[1:]),
        "spoof_truncated": (255, release[:6]),
    }
    labels = list(mutations)
    for i in range(spoofed_per_100):
        label = labels[i % len(labels)]
        ttl, payload = mutations[label]
        mix.append(Junk(label, build_ipv4_packet(master, target, ttl, 112, payload)))
    # Interleave so that every stretch of the flood has both kinds.
    rng.shuffle(mix)
    return mix


def flood(
    mix: Sequence[Junk], target: IPv4Address, *, rate: float, seconds: float,
    count: int | None = None,
) -> FloodResult:
    """Send ``mix`` round-robin at ``rate`` packets/s for ``seconds`` (and <= ``count``).

    Blocking, in the calling process's namespace; needs CAP_NET_RAW.  Paced in 1 ms
    slices, so the achieved rate is the asked one or whatever the CPU allows.
    """
    if not mix:
        raise ValueError("empty mix")
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    seconds = min(seconds, MAX_SECONDS)
    limit = count if count is not None else int(rate * seconds) + 1
    packets = [j.packet for j in mix]
    n = len(packets)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    addr = (str(target), 0)
    sent = errors = 0
    start = time.monotonic()
    try:
        while sent < limit:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = min(limit, int(elapsed * rate) + 1)
            if sent >= due:
                time.sleep(0.001)
                continue
            for _ in range(min(due - sent, 1000)):
                try:
                    sock.sendto(packets[sent % n], addr)
                except OSError:
                    errors += 1
                sent += 1
    finally:
        sock.close()
    wall = time.monotonic() - start
    per_label: Counter[str] = Counter()
    full, rest = divmod(sent, n)
    for i, junk in enumerate(mix):
        per_label[junk.label] += full + (1 if i < rest else 0)
    return FloodResult(dict(per_label), errors, wall)


async def flood_in(
    namespace: str,
    *,
    master: IPv4Address,
    target: IPv4Address,
    attacker: IPv4Address,
    network: IPv4Network,
    vip: IPv4Address,
    rate: float,
    seconds: float,
    workers: int = 1,
    spoofed_per_100: int = 10,
) -> FloodResult:
    """Run the flood from ``namespace`` in ``workers`` processes (``rate`` split evenly).

    Separate processes so the sender neither competes with the caller's event loop nor
    is limited to one core's worth of Python.  Returns the summed result; wall time is
    the longest worker's.
    """
    argv = [
        sys.executable, "-m", "lab.flood", "--master", str(master),
        "--target", str(target), "--attacker", str(attacker), "--network", str(network),
        "--vip", str(vip), "--rate", str(rate / workers), "--seconds", str(seconds),
        "--spoofed-per-100", str(spoofed_per_100),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": _CHECKOUT}  # this checkout's mailha, not another
    results = await asyncio.gather(*(
        netns.run(argv, netns=namespace, env=env, time_limit=min(seconds, MAX_SECONDS) + 30)
        for _ in range(workers)
    ))
    sent: Counter[str] = Counter()
    errors = 0
    wall = 0.0
    for result in results:
        report = json.loads(result.stdout.strip().splitlines()[-1])
        sent.update(report["sent"])
        errors += report["errors"]
        wall = max(wall, report["seconds"])
    return FloodResult(dict(sent), errors, wall)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="protocol-112 junk flood (lab only)")
    parser.add_argument("--master", type=IPv4Address, required=True)
    parser.add_argument("--target", type=IPv4Address, required=True)
    parser.add_argument("--attacker", type=IPv4Address, required=True)
    parser.add_argument("--network", type=IPv4Network, required=True)
    parser.add_argument("--vip", type=IPv4Address, required=True)
    parser.add_argument("--vrid", type=int, default=173)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--count", type=int)
    parser.add_argument("--spoofed-per-100", type=int, default=10)
    args = parser.parse_args(argv)
    if args.target not in args.network or not args.target.is_private:
        parser.error("the target must be a private address of --network (lab only)")
    mix = flood_mix(master=args.master, target=args.target, attacker=args.attacker,
                    network=args.network, vrid=args.vrid, vip=args.vip,
                    spoofed_per_100=args.spoofed_per_100)
    result = flood(mix, args.target, rate=args.rate, seconds=args.seconds, count=args.count)
    json.dump({"sent": result.sent, "total": result.total, "errors": result.errors,
               "seconds": round(result.seconds, 3), "rate": round(result.rate, 1)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
