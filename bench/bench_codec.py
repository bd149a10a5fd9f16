"""Time the VRRP codec and the checksum strategies; prints numbers, asserts nothing.

Run from the checkout: .venv/bin/python bench/bench_codec.py

At the fastest interval keepalived allows (v3, 10 ms) a node handles ~100 adverts/s
per instance, so the codec only has to be "not silly"; this shows by how much it is
not, and why the checksum uses ``int.from_bytes`` rather than a word loop.
"""

from __future__ import annotations

import sys
import timeit
from array import array
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address

from mailha.net.checksum import internet_checksum
from mailha.vrrp.packet import Advert, build_ipv4_packet, decode_advert, encode_advert
from mailha.vrrp.packet import parse_ipv4_packet as parse_ip

SRC, DST, VIP = (IPv4Address(a) for a in ("10.12.49.36", "10.12.49.35", "10.12.49.37"))


def checksum_loop(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum_array(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    words = array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def per_call_us(function: Callable[[], object], number: int) -> float:
    best = min(timeit.repeat(function, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    v3 = Advert(version=3, vrid=173, priority=200, max_advert_int=1.0, addresses=(VIP,))
    v2 = Advert(version=2, vrid=173, priority=200, max_advert_int=1.0, addresses=(VIP,))
    v3_bytes = encode_advert(v3, src=SRC, dst=DST)
    v2_bytes = encode_advert(v2, src=SRC, dst=DST)
    ip_bytes = build_ipv4_packet(SRC, DST, 255, 112, v3_bytes)
    many = Advert(
        version=3,
        vrid=1,
        priority=1,
        max_advert_int=1.0,
        addresses=tuple(IPv4Address(0x0A000000 + i) for i in range(255)),
    )
    many_bytes = encode_advert(many, src=SRC, dst=DST)

    print("checksum strategies (µs per call)")
    for size in (20, 1028, 9000):
        data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert checksum_loop(data) == checksum_array(data) == internet_checksum(data)
        row = {
            "int.from_bytes": per_call_us(partial(internet_checksum, data), 20000),
            "array('H')": per_call_us(partial(checksum_array, data), 20000),
            "word loop": per_call_us(partial(checksum_loop, data), 2000),
        }
        print(f"  {size:5d} octets: " + ", ".join(f"{k} {v:7.2f}" for k, v in row.items()))

    print("codec (µs per call)")
    cases: dict[str, Callable[[], object]] = {
        "encode v3, 1 address": lambda: encode_advert(v3, src=SRC, dst=DST),
        "encode v2, 1 address": lambda: encode_advert(v2, src=SRC, dst=DST),
        "decode v3, 1 address": lambda: decode_advert(v3_bytes, src=SRC, dst=DST, ttl=255),
        "decode v2, 1 address": lambda: decode_advert(v2_bytes, src=SRC, dst=DST, ttl=255),
        "decode v3, 255 addresses": lambda: decode_advert(many_bytes, src=SRC, dst=DST, ttl=255),
        "parse IPv4 header": lambda: parse_ip(ip_bytes),
        "parse + decode (receive path)": lambda: decode_advert(
            parse_ip(ip_bytes).payload, src=SRC, dst=DST, ttl=255
        ),
    }
    for name, function in cases.items():
        print(f"  {name:32s} {per_call_us(function, 20000):8.2f}")


if __name__ == "__main__":
    main()
