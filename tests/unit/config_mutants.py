"""Mutated copies of a config file, for fuzzing the loader the way issue 9 found its bugs.

Where ``test_config_fuzz`` builds documents from the schema, these start from a real,
valid node file and break it the ways files really break (or are broken on purpose):
arrays and inline tables nested 1,000 and 100,000 deep (closed and unclosed), dotted
keys and table headers with thousands of parts, truncation, flipped bits (including
invalid UTF-8), duplicated, dropped and swapped lines, values of the wrong type, table
headers of the wrong kind, whole sections replaced by values of the wrong type, and
stray punctuation. The generator is seeded, so a failing mutant is reproduced by its
index: ``list(mutants(BASE, count, seed))[i]``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DEEP = (1_000, 100_000)

#: Values of every TOML type, to put where another type is expected.
VALUES = (
    '"text"', '""', "42", "-1", "0", "1.5", "nan", "-inf", "true", "false",
    "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "[]", '[1, "a"]', "{}", "{ x = 1 }",
    "[[1]]", "[{}]", '{ script = ["/bin/true"] }', '["10.0.0.1", 5]',
)

#: Whole sections replaced by a value of the wrong shape (a table where an array of
#: tables belongs, arrays of scalars, tables of scalars, nested wrong types).
SECTIONS = (
    'global = "node1"', "global = []", "global = { lvs_timeouts = 5 }",
    "global = { lvs_sync_daemon = [1] }", "metrics = 5", "metrics = [{}]",
    'control = "/run/x.sock"', "control = { socket = [] }", "control = [[]]",
    'vrrp_script = "chk"', "vrrp_script = { chk_postfix = 1 }",
    'vrrp_script = { chk_postfix = { script = { script = 5, user = [] } } }',
    "vrrp_instance = []", "vrrp_instance = { VI_postfix = [1, 2] }",
    'vrrp_instance = { VI = { interface = "eth0", virtual_router_id = 1, unicast_peer = '
    '[{ address = [] }], track_script = [[]], authentication = "PASS" } }',
    "virtual_server = {}", 'virtual_server = [1, "a"]', "virtual_server = [[]]",
    'virtual_server = [{ ip = "10.0.0.1", port = 25, real_server = 5 }]',
    'virtual_server = [{ ip = "10.0.0.1", port = 25, sorry_server = [], tunnel = 1 }]',
    'virtual_server = [{ ip = "10.0.0.1", port = 25, real_server = [{ ip = "10.0.0.2", '
    'SMTP_CHECK = 5 }] }]',
    'virtual_server = [{ ip = "10.0.0.1", port = 25, real_server = [{ ip = "10.0.0.2", '
    'TCP_CHECK = [[]], MISC_CHECK = [{ misc_path = {} }] }] }]',
    "virtual_server_group = []", "virtual_server_group = { mail = 5 }",
    "virtual_server_group = { mail = { members = [[1]] } }",
)

_HEADER = re.compile(rb"^\s*\[")
_KEY_LINE = re.compile(rb"^(\s*[A-Za-z0-9_.\"-]+\s*=\s*)(.*)$")


@dataclass(frozen=True)
class Mutant:
    """One mutated file: ``name`` says what was done, for the failure message."""

    index: int
    name: str
    data: bytes


Mutation = Callable[[random.Random, bytes], tuple[str, bytes]]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _key_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]


def _set_value(rng: random.Random, data: bytes, value: bytes) -> bytes:
    """Replace the value of one ``key = value`` line (or append a new key)."""
    lines = _lines(data)
    candidates = _key_lines(lines)
    if not candidates or rng.random() < 0.2:
        return data + b"\nfuzz = " + value + b"\n"
    i = rng.choice(candidates)
    m = _KEY_LINE.match(lines[i])
    assert m is not None
    lines[i] = m.group(1) + value
    return b"\n".join(lines)


def deep_nesting(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    depth = rng.choice(DEEP)
    kind = rng.choice(("arrays", "tables", "mixed", "unclosed-arrays", "unclosed-tables"))
    if kind == "arrays":
        value = "[" * depth + "1" + "]" * depth
    elif kind == "tables":
        value = "{ a = " * depth + "1" + " }" * depth
    elif kind == "mixed":
        value = "[{ a = " * (depth // 2) + "1" + " }]" * (depth // 2)
    elif kind == "unclosed-arrays":
        value = "[" * depth
    else:
        value = "{ a = " * depth
    return f"deep {kind} x{depth}", _set_value(rng, data, value.encode())


def deep_keys(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    parts = rng.choice(DEEP)
    dotted = ".".join(["a"] * parts).encode()
    lines = _lines(data)
    at = rng.randrange(len(lines) + 1)
    if rng.random() < 0.5:
        lines.insert(at, dotted + b" = 1")
        return f"dotted key of {parts} parts", b"\n".join(lines)
    lines.insert(at, b"[" + dotted + b"]")
    return f"table header of {parts} parts", b"\n".join(lines)


def truncate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    at = rng.randrange(len(data))
    return f"truncated at byte {at}", data[:at]


def flip_bits(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    out = bytearray(data)
    flips = []
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out))
        bit = rng.randrange(8)
        out[at] ^= 1 << bit
        flips.append(f"{at}:{bit}")
    return f"bits flipped {','.join(flips)}", bytes(out)


def duplicate_line(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i])
    return f"line {i + 1} duplicated", b"\n".join(lines)


def drop_line(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    del lines[i]
    return f"line {i + 1} dropped", b"\n".join(lines)


def swap_lines(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return f"lines {i + 1} and {j + 1} swapped", b"\n".join(lines)


def swap_type(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    value = rng.choice(VALUES)
    return f"a value became {value}", _set_value(rng, data, value.encode())


def swap_header(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """``[t]`` <-> ``[[t]]``, or a header turned into ``t = value``."""
    lines = _lines(data)
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if not headers:
        return swap_type(rng, data)
    i = rng.choice(headers)
    name = lines[i].strip().strip(b"[]")
    choice = rng.randrange(3)
    if choice == 0:
        lines[i] = b"[[" + name + b"]]"
    elif choice == 1:
        lines[i] = b"[" + name + b"]"
    else:
        lines[i] = name + b" = " + rng.choice(VALUES).encode()
    return f"header of line {i + 1} became {lines[i]!r}", b"\n".join(lines)


def replace_section(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """Drop the section of that name (if any) and define it up front as a wrong value."""
    section = rng.choice(SECTIONS)
    top = section.split(" ")[0].encode()
    kept: list[bytes] = []
    skipping = False
    for line in _lines(data):
        if _HEADER.match(line):
            name = line.strip().strip(b"[]").split(b".")[0]
            skipping = name == top
        if not skipping:
            kept.append(line)
    return f"section replaced: {section}", section.encode() + b"\n" + b"\n".join(kept)


def stray_punctuation(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    at = rng.randrange(len(data) + 1)
    junk = bytes(rng.choice(b'[]{}="\'#.,\n\\') for _ in range(rng.randint(1, 3)))
    return f"{junk!r} inserted at byte {at}", data[:at] + junk + data[at:]


#: (weight, mutation): deep nesting is common enough to hit ~14% of the mutants.
MUTATIONS: tuple[tuple[int, Mutation], ...] = (
    (10, deep_nesting), (4, deep_keys), (8, truncate), (10, flip_bits), (10, duplicate_line),
    (6, drop_line), (6, swap_lines), (14, swap_type), (8, swap_header), (10, replace_section),
    (8, stray_punctuation),
)


def mutants(base: bytes, count: int, seed: int) -> Iterator[Mutant]:
    """``count`` mutants of ``base``, each 1-3 mutations deep, reproducible from ``seed``."""
    rng = random.Random(seed)
    weights = [w for w, _ in MUTATIONS]
    funcs = [f for _, f in MUTATIONS]
    for index in range(count):
        data = base
        names = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            (mutate,) = rng.choices(funcs, weights)
            name, data = mutate(rng, data)
            names.append(name)
        yield Mutant(index, "; ".join(names), data)
