"""The IP address type the whole package speaks of: one alias, defined once."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import TypeAlias

__all__ = ["IPAddress"]

IPAddress: TypeAlias = IPv4Address | IPv6Address
