"""Which received packets an instance takes: keepalived's receive checks, pure.

The codec (:func:`~mailha.vrrp.packet.decode_advert`) checks what RFC 5798 §7.1 says of
the packet itself; what depends on the instance's configuration is decided here, so the
driver only reads the socket and counts:

* our own adverts, looped back, are ignored; so are adverts of another instance of
  this daemon on the same socket (its VRID is in ``local_vrids``);
* in unicast mode only the ``unicast_peer`` addresses are heard (the kernel filter
  drops the others first; this is the check that holds where it could not attach);
* TTL / hop limit: 255 in multicast mode (RFC 5798 §7.1); in unicast mode none is
  required, as in keepalived 2.2.7 (a unicast peer may be routed, and may send with
  ``unicast_ttl``), unless the peer has ``min_ttl``/``max_ttl``, which then bound it;
* the VRID, and VRRPv2 authentication.

The address list of an accepted advert is compared with the instance's virtual
addresses (:func:`address_list_mismatch`) for diagnosis only: keepalived counts and
logs a mismatch and still processes the advert, and so does mailha.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from mailha.config.model import Authentication, UnicastPeer
from mailha.ip import IPAddress
from mailha.vrrp.packet import Advert, AuthType, VrrpDecodeError, decode_advert

__all__ = [
    "AdmissionRules",
    "Ignored",
    "Rejected",
    "address_list_mismatch",
    "admit",
    "compare_addresses",
]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Dropped and counted: ``reason`` is the metric label, ``detail`` the debug log."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not for this instance and not an error (our own advert, a sibling instance's)."""

    why: str


@dataclass(frozen=True, slots=True)
class AdmissionRules:
    """What an instance's receive checks need from its configuration."""

    vrid: int
    primary: IPAddress
    multicast: bool
    peers: Mapping[IPAddress, UnicastPeer]
    local_vrids: Collection[int]
    version: int
    authentication: Authentication | None = None
    v3_checksum_as_v2: bool = False
    #: The configured VIPs, for keepalived's address-list comparison.
    vips: tuple[IPAddress, ...] = ()


def admit(
    rules: AdmissionRules,
    payload: bytes,
    *,
    src: IPAddress,
    dst: IPAddress | None,
    ttl: int | None,
) -> Advert | Rejected | Ignored:
    """Decode ``payload`` (from ``src`` to ``dst`` with ``ttl``) and apply the rules."""
    if src == rules.primary:
        return Ignored("own advert")
    peer = rules.peers.get(src)
    if not rules.multicast and peer is None:
        return Rejected("not_peer", f"from {src}, not a unicast_peer")
    if dst is None or ttl is None:
        return Rejected("ip_header", f"from {src}: no destination or TTL")
    try:
        advert = decode_advert(
            payload, src=src, dst=dst, ttl=ttl,
            v3_checksum_as_v2=rules.v3_checksum_as_v2, check_ttl=rules.multicast,
        )
    except VrrpDecodeError as exc:
        return Rejected(exc.reason, f"from {src}: {exc.detail}")
    if peer is not None and (peer.min_ttl is not None or peer.max_ttl is not None):
        low = peer.min_ttl if peer.min_ttl is not None else 0
        high = peer.max_ttl if peer.max_ttl is not None else 255
        if not low <= ttl <= high:
            return Rejected("ttl", f"from {src}: TTL {ttl} not {low}..{high}")
    if advert.vrid != rules.vrid:
        if advert.vrid in rules.local_vrids:
            return Ignored(f"VRID {advert.vrid} is another local instance's")
        return Rejected("vrid", f"from {src}: VRID {advert.vrid} is not ours")
    if not _auth_ok(rules, advert):
        return Rejected("auth", f"from {src}: authentication mismatch")
    return advert


def _auth_ok(rules: AdmissionRules, advert: Advert) -> bool:
    if rules.version != 2:
        return True
    auth = rules.authentication
    if auth is None:
        return advert.auth_type == AuthType.NONE
    want = auth.auth_pass.encode()[:8].ljust(8, b"\0")
    return advert.auth_type == AuthType.PASS and advert.auth_data == want


def address_list_mismatch(
    advert: Advert, vips: Sequence[IPAddress], *, compare_addresses: bool = True
) -> str | None:
    """How ``advert``'s address list differs from the instance's VIPs, or None.

    keepalived always compares the count, then, unless ``compare_addresses`` is false,
    looks for each configured VIP in the advert ("ip address associated with VRID not
    present in advert"); the order does not matter. With ``skip_check_adv_addr`` it
    skips the second step for a backup hearing the same master as before (the caller
    decides: :func:`compare_addresses`).
    """
    if len(advert.addresses) != len(vips):
        return f"{len(advert.addresses)} addresses in the advert, {len(vips)} configured"
    if not compare_addresses:
        return None
    missing = [str(v) for v in vips if v not in advert.addresses]
    if missing:
        return "configured but not in the advert: " + ", ".join(missing)
    return None


def compare_addresses(*, skip_check_adv_addr: bool, master: bool, same_master: bool) -> bool:
    """Whether an advert's addresses are compared one by one (keepalived's rule).

    A master always compares; a backup compares unless ``skip_check_adv_addr`` is set
    and the advert comes from the master it last heard.
    """
    return master or not skip_check_adv_addr or not same_master
