"""Value converters for the config loader: one TOML value in, a model value out, or an
``_Invalid`` that says what was expected; and keepalived's line syntaxes (a VIP line, a
virtual_server_group member, an address range)."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any, TypeVar

from mailha.config.model import (
    SCHEDULER_FLAGS,
    SCHEDULERS,
    GroupMember,
    LvsMethod,
    TunnelType,
    VirtualAddress,
)
from mailha.ip import IPAddress
from mailha.procs import ScriptError, split_command

T = TypeVar("T")
Conv = Callable[[object], Any]


# ------------------------------------------------------------------- value helpers


class _Invalid(Exception):
    """A value that cannot be used; the message says what was expected."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def describe(value: object) -> str:
    """How to name the TOML type of ``value`` in a message: 'a string', 'an array'..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    return type(value).__name__


def _expected(what: str, value: object, hint: str = "") -> _Invalid:
    return _Invalid(f"expected {what}, got {describe(value)}", hint)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value, 'quote it: key = "text"')
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        hint = "write true or false without quotes"
        if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "true", "false"):
            hint = f"TOML booleans are true/false without quotes, not {json.dumps(value)}"
        raise _expected("a boolean", value, hint)
    return value


def _integer(lo: int, hi: int, hint: str = "", note: str = "") -> Conv:
    """An integer in lo..hi; ``hint`` is the fix for a value out of range."""
    span = f"{lo} or {hi}" if hi == lo + 1 else f"{lo}..{hi}"

    def conv(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            fix = "write a whole number without quotes"
            if isinstance(value, str) and "reverse" in value.split():
                fix = "weight and reverse are separate keys: weight = 100 and reverse = true"
            raise _expected("an integer", value, fix)
        if not lo <= value <= hi:
            raise _Invalid(f"must be {span}{note}", hint or f"use a value in {span}")
        return value

    return conv


def _timer(lo: float, hi: float = math.inf, *, lo_open: bool = False, hint: str = "") -> Conv:
    """Seconds as an integer or a float (keepalived's <TIMER>), returned as float."""

    def conv(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _expected("a number of seconds", value, hint or "write e.g. 2 or 0.5, no quotes")
        seconds = float(value)
        if not math.isfinite(seconds):
            raise _Invalid("must be a finite number of seconds", hint)
        if (seconds <= lo if lo_open else seconds < lo) or seconds > hi:
            low = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
            rng = low if hi == math.inf else f"{low} and at most {hi:g}"
            raise _Invalid(f"must be {rng} seconds", hint or f"use a value {rng}")
        return seconds

    return conv


_port = _integer(1, 65535)
_positive_timer = _timer(0, lo_open=True)
_nonneg_timer = _timer(0)


def _choice(options: Mapping[str, T], what: str) -> Callable[[object], T]:
    """A string from a fixed set, matched case-insensitively (keepalived is not picky)."""
    folded = {k.lower(): v for k, v in options.items()}

    def conv(value: object) -> T:
        names = ", ".join(options)
        if not isinstance(value, str):
            example = next(iter(options))
            raise _expected(f"one of {names}", value, f'write it as a string, e.g. "{example}"')
        try:
            return folded[value.lower()]
        except KeyError:
            close = difflib.get_close_matches(value.lower(), folded, n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise _Invalid(f"not a valid {what}", f"{hint}use one of {names}") from None

    return conv


def _ip(value: object) -> IPAddress:
    if not isinstance(value, str):
        raise _expected("an IP address string", value, 'quote it: "10.12.49.37"')
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        hint = 'write just the address, e.g. "10.12.49.37"'
        if "/" in value:
            hint = "a prefix length is not allowed here; " + hint
        elif ":" in value and "." in value:
            hint = "give the port as its own key (port = 25); " + hint
        raise _Invalid("not an IP address", hint) from None


def _multicast(version: int) -> Conv:
    def conv(value: object) -> IPAddress:
        addr = _ip(value)
        if addr.version != version or not addr.is_multicast:
            raise _Invalid(f"must be an IPv{version} multicast address")
        return addr

    return conv


def _str_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _expected("an array of strings", value, 'write ["a", "b"]')
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Invalid(f"every element must be a non-empty string, got {describe(item)}")
        out.append(item)
    return tuple(out)


def _argv(value: object) -> tuple[str, ...]:
    """A command, as keepalived splits it (:func:`mailha.procs.split_command`), or argv."""
    if isinstance(value, str):
        try:
            argv = split_command(value)
        except ScriptError as exc:
            raise _Invalid(f"cannot split the command line: {exc.reason}",
                           "balance the quotes; end no word with a lone backslash") from None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = [str(v) for v in value]
    else:
        raise _expected("a command (string or array of strings)", value,
                        'write "/path/to/script arg" or ["/path/to/script", "arg"]')
    if not argv or not argv[0].strip():
        raise _Invalid("the command is empty", "give the path of the program to run")
    return tuple(argv)



# ------------------------------------------------------------------- line syntaxes

_SCOPES = ("global", "site", "link", "host", "nowhere")


def _interface(value: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(value, str):
        raise _expected("an address string", value, 'write "10.12.49.37/24"')
    try:
        return ipaddress.ip_interface(value.strip())
    except ValueError:
        raise _Invalid("not an IP address with optional /prefix",
                       'write e.g. "10.12.49.37/24" or "2001:db8::25/64"') from None


def _label(value: object) -> str:
    label = _string(value)
    if len(label) > 15 or any(c.isspace() for c in label):
        raise _Invalid("a label is at most 15 characters without spaces", 'e.g. "eth0:mail"')
    return label


def _scope(value: object) -> str:
    scope = _string(value)
    if scope not in _SCOPES and not scope.isdigit():
        raise _Invalid("not a valid scope", f"use one of {', '.join(_SCOPES)}")
    return scope


_VIP_OPTIONS = {"dev": _string, "label": _label, "scope": _scope, "brd": _ip}


def _vip_line(line: str) -> VirtualAddress:
    """keepalived's ``IP[/prefix] [brd IP] [dev X] [label L] [scope S] [no_track]``."""
    words = line.split()
    if not words:
        raise _Invalid("empty address", 'write "10.12.49.37/24 dev eth0"')
    address = _interface(words[0])
    options: dict[str, Any] = {}
    rest = iter(words[1:])
    for word in rest:
        if word == "no_track":
            options["no_track"] = True
            continue
        if word not in _VIP_OPTIONS:
            raise _Invalid(f'unsupported option "{word}"',
                           "mailha understands brd, dev, label, scope and no_track")
        arg = next(rest, None)
        if arg is None:
            raise _Invalid(f'"{word}" needs a value', f'write "{words[0]} {word} VALUE"')
        options[word] = _VIP_OPTIONS[word](arg)
    brd = options.get("brd")
    if brd is not None and brd.version != address.version:
        raise _Invalid("the broadcast address is of another family", "drop brd or fix it")
    return VirtualAddress(address=address, **options)


def _group_member(line: str) -> GroupMember:
    """``IP [PORT]``, ``IP-RANGE [PORT]``, ``A.B.C.D/NN [PORT]`` or ``fwmark N [inet|inet6]``."""
    words = line.split()
    hint = 'write "10.12.49.37 25", "10.12.49.40-45 25" or "fwmark 1"'
    if not words or len(words) > 3:
        raise _Invalid("not a group member", hint)
    if words[0] == "fwmark":
        if len(words) < 2 or not words[1].isdigit() or not 1 <= int(words[1]) <= 0xFFFFFFFF:
            raise _Invalid("fwmark needs a mark 1..4294967295", hint)
        family = None
        if len(words) == 3:
            if words[2] not in ("inet", "inet6"):
                raise _Invalid(f'unknown family "{words[2]}"', 'use "inet" or "inet6"')
            family = 6 if words[2] == "inet6" else 4
        return GroupMember(fwmark=int(words[1]), family=family)
    if len(words) > 2:
        raise _Invalid("too many words for an address member", hint)
    port = None
    if len(words) == 2:
        if not words[1].isdigit() or not 1 <= int(words[1]) <= 65535:
            raise _Invalid("the port must be 1..65535", hint)
        port = int(words[1])
    first, last = _address_range(words[0], hint)
    return GroupMember(first=first, last=last, port=port)


def _address_range(text: str, hint: str) -> tuple[IPAddress, IPAddress]:
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return net[0], net[-1]
        if "-" not in text:
            addr = ipaddress.ip_address(text)
            return addr, addr
        start, end = text.split("-", 1)
        first = ipaddress.ip_address(start)
        if first.version == 4 and "." in end:
            last: IPAddress = ipaddress.ip_address(end)
        elif first.version == 6 and ":" in end:
            last = ipaddress.ip_address(end)
        elif first.version == 4:
            octets = start.split(".")
            last = ipaddress.ip_address(".".join([*octets[:3], end]))
        else:
            last = ipaddress.ip_address((int(first) & ~0xFFFF) | int(end, 16))
    except ValueError:
        raise _Invalid("not an address, range or network", hint) from None
    if last.version != first.version or int(last) < int(first):
        raise _Invalid("the range ends before it starts", hint)
    return first, last


# ------------------------------------------------------------------- specs


def _netmask(value: object) -> IPAddress:
    addr = _ip(value)
    bits = int(addr)
    width = addr.max_prefixlen
    inverted = ~bits & ((1 << width) - 1)
    if inverted & (inverted + 1):
        raise _Invalid("not a netmask (the one bits must be contiguous)", 'e.g. "255.255.255.0"')
    return addr


def _family(value: object) -> int:
    return int(_choice({"inet": 4, "inet6": 6}, "ip_family")(value))


def _sched(value: object) -> str:
    return str(_choice({s: s for s in sorted(SCHEDULERS)}, "IPVS scheduler")(value))


def _flags(value: object) -> frozenset[str]:
    flags = _str_list(value)
    for flag in flags:
        if flag not in SCHEDULER_FLAGS:
            close = difflib.get_close_matches(flag, list(SCHEDULER_FLAGS), n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise _Invalid(f'"{flag}" is not a scheduler flag',
                           f"{hint}use {', '.join(sorted(SCHEDULER_FLAGS))}")
    return frozenset(flags)


INSTANCE_VRID = _integer(1, 255, note=" (the VRRP packet has one octet for it)")
INSTANCE_VERSION = _integer(2, 3, hint="version = 2 (RFC 3768) or 3 (RFC 5798)")
WEIGHT = _integer(-253, 253, hint="weights are -253..253; 0 means FAULT on failure")
TTL = _integer(0, 255)
LVS_METHOD = _choice({m.value: m for m in LvsMethod}, "forwarding method")
TUNNEL_TYPE = _choice({t.value: t for t in TunnelType}, "tunnel type")
CHECKSUM = _choice({c: c for c in ("nocsum", "csum", "remcsum")}, "tunnel checksum")
