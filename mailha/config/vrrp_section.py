"""The VRRP sections of the config: ``vrrp_script`` and ``vrrp_instance`` tables, with
their addresses, unicast peers, tracked objects and authentication."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mailha.config.errors import (
    KeyPath,
)
from mailha.config.keys import (
    GARP_INHERITANCE,
    INSTANCE_KEYS,
    INSTANCE_SPEC,
    NOTIFY_KEYS,
    SCRIPT_SPEC,
)
from mailha.config.model import (
    Authentication,
    GlobalConfig,
    InitialState,
    TrackedInterface,
    TrackedScript,
    UnicastPeer,
    VirtualAddress,
    VrrpInstance,
    VrrpScript,
)
from mailha.config.table import BuilderBase, _Table
from mailha.config.values import (
    INSTANCE_VERSION,
    INSTANCE_VRID,
    TTL,
    WEIGHT,
    _bool,
    _choice,
    _expected,
    _interface,
    _Invalid,
    _ip,
    _label,
    _scope,
    _string,
    _timer,
    _vip_line,
    describe,
)

T = TypeVar("T")


class VrrpSection(BuilderBase):
    def vrrp_script(self, name: str, raw: object, global_: GlobalConfig) -> VrrpScript | None:
        path: KeyPath = ("vrrp_script", name)
        t = _Table(self, raw, path, SCRIPT_SPEC.keys() | {"script", "user", "group", "reverse"},
                   f"vrrp_script.{name}")
        values = t.take(SCRIPT_SPEC)
        if t.ok and not t.has("script"):
            self.report("error", path, 'missing required key "script"',
                        'give the command to run: script = "/path/to/check --arg"')
        command = self.script_command(t, "script", global_, user_keys=True)
        reverse = t.get("reverse", _bool)
        values.setdefault("timeout", values.get("interval", 1.0))  # keepalived: the interval
        if command is None:
            return None
        return self.record(
            VrrpScript(name=name, script=command, weight_reverse=bool(reverse), **values), path
        )

    # -------------------------------------------------------------- VRRP instance

    def vrrp_instance(self, name: str, raw: object, global_: GlobalConfig) -> VrrpInstance | None:
        path: KeyPath = ("vrrp_instance", name)
        t = _Table(self, raw, path, INSTANCE_KEYS, f"vrrp_instance.{name}")
        values = t.take(INSTANCE_SPEC)
        interface = t.require("interface", _string, 'name the interface: interface = "eth0"')
        vrid = t.require("virtual_router_id", INSTANCE_VRID,
                         "use the same number 1..255 on every node of this virtual router")
        vips = self.addresses(t, "virtual_ipaddress")
        excluded = self.addresses(t, "virtual_ipaddress_excluded")
        v6 = bool(vips) and vips[0].address.version == 6  # the instance's family
        explicit_version = t.get("version", INSTANCE_VERSION)
        if explicit_version is not None:
            version = explicit_version
        else:  # keepalived: IPv6 instances always run version 3
            version = 3 if v6 else global_.vrrp_version
        if t.has("advert_int"):
            advert = t.get("advert_int", _timer(0, lo_open=True, hint="e.g. advert_int = 1"))
            if advert is not None:
                advert = self.check_advert_int(path, advert, version)
            if advert is not None:
                values["advert_int"] = advert
        peers = self.peers(t)
        tracked_scripts = self.tracked(t, "track_script", TrackedScript)
        tracked_ifaces = self.tracked(t, "track_interface", TrackedInterface)
        auth = self.authentication(t, version)
        for key in NOTIFY_KEYS:
            cmd = self.script_command(t, key, global_)
            if cmd is not None:
                values[key] = cmd
        # Per-instance values that default to the global ones.
        for key, global_key in GARP_INHERITANCE.items():
            if key not in values:
                values[key] = getattr(global_, global_key)
        if "garp_lower_prio_delay" not in values or values["garp_lower_prio_delay"] is None:
            values["garp_lower_prio_delay"] = values["garp_master_delay"]
        if "garp_lower_prio_repeat" not in values or values["garp_lower_prio_repeat"] is None:
            values["garp_lower_prio_repeat"] = values["garp_master_repeat"]
        self.inert_false(path, values, "check_unicast_src")
        values.setdefault("strict_mode", global_.vrrp_strict)
        values.setdefault("skip_check_adv_addr", global_.vrrp_skip_check_adv_addr)
        values.setdefault("check_unicast_src", global_.vrrp_check_unicast_src
                          or any(p.min_ttl is not None or p.max_ttl is not None for p in peers))
        values.setdefault("smtp_alert", global_.smtp_alert)
        if values["strict_mode"]:
            # keepalived: strict mode defaults to no accept mode; VRRPv2 (RFC 3768) has
            # no accept mode at all, so an explicit one is reset there.
            if values.get("accept") is True and version == 2:
                self.report("warning", (*path, "accept"),
                            "strict mode (vrrp_strict/strict_mode) with VRRPv2 does not allow "
                            "accept mode (RFC 3768 has none): no_accept applies",
                            "drop accept = true, use version = 3, or turn strict mode off",
                            value=True)
                values["accept"] = False
            values.setdefault("accept", False)
            # keepalived: strict mode answers no lower-priority advert, and never
            # sends one when yielding to a higher priority.
            values.setdefault("lower_prio_no_advert", True)
            if values.get("higher_prio_send_advert"):
                self.report("warning", (*path, "higher_prio_send_advert"),
                            "strict mode (vrrp_strict/strict_mode) does not allow "
                            "higher_prio_send_advert: not sent",
                            "drop higher_prio_send_advert, or turn strict mode off", value=True)
                values["higher_prio_send_advert"] = False
        state = values.get("state", InitialState.BACKUP)
        if state is InitialState.MASTER and values.get("nopreempt"):
            self.report("warning", (*path, "nopreempt"),
                        'nopreempt only works when the initial state is not MASTER',
                        'set state = "BACKUP" on every node to use nopreempt', value=True)
        if state is InitialState.MASTER and values.get("preempt_delay"):
            self.report("warning", (*path, "preempt_delay"),
                        "preempt_delay only works when the initial state is not MASTER",
                        'set state = "BACKUP" to use preempt_delay', value=values["preempt_delay"])
        if not t.ok:
            return None
        # Without a usable interface or VRID the instance is still built, with
        # placeholders, so the cross-field checks see its VIPs and tracked scripts; the
        # error already reported guarantees this draft is never returned.
        instance = VrrpInstance(
            name=name, interface=interface or "", virtual_router_id=vrid or 0, version=version,
            virtual_ipaddress=vips, virtual_ipaddress_excluded=excluded, unicast_peer=peers,
            track_script=tracked_scripts, track_interface=tracked_ifaces,
            authentication=auth, **values,
        )
        return self.record(instance, path)

    def check_advert_int(self, path: KeyPath, advert: float, version: int) -> float | None:
        key = (*path, "advert_int")
        if version == 2:
            if advert != int(advert) or not 1 <= advert <= 255:
                self.report("error", key,
                            "VRRP version 2 carries the interval in whole seconds, 1..255",
                            "use a whole number of seconds, or version = 3 for sub-second adverts",
                            value=advert)
                return None
            return advert
        centis = advert * 100
        if abs(centis - round(centis)) > 1e-6 or not 1 <= round(centis) <= 4095:
            self.report("error", key,
                        "VRRP version 3 carries the interval in centiseconds: 0.01..40.95 s in "
                        "steps of 0.01 s",
                        "round it to a multiple of 0.01 within 0.01..40.95", value=advert)
            return None
        return round(centis) / 100

    def addresses(self, t: _Table, key: str) -> tuple[VirtualAddress, ...]:
        if not t.has(key):
            return ()
        raw = t.raw[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.report("error", (*t.path, key),
                        f"expected an array of addresses, got {describe(raw)}",
                        'write ["10.12.49.37/24 dev eth0"]', value=raw)
            return ()
        out = []
        for i, item in enumerate(raw):
            path = (*t.path, key, i)
            try:
                vip = _vip_line(item) if isinstance(item, str) else self.vip_table(path, item)
            except _Invalid as exc:
                self.report("error", path, exc.message, exc.hint, value=item)
                continue
            if vip is not None:
                out.append(self.record(vip, path))
        return tuple(out)

    def vip_table(self, path: KeyPath, raw: object) -> VirtualAddress | None:
        if not isinstance(raw, dict):
            raise _expected("an address string or table", raw,
                            'write "10.12.49.37/24" or { address = "10.12.49.37/24" }')
        t = _Table(self, raw, path, ("address", "dev", "label", "scope", "brd", "no_track"),
                   "a virtual address")
        address = t.require("address", _interface, 'give the address: address = "10.12.49.37/24"')
        values = t.take({"dev": _string, "label": _label, "scope": _scope, "brd": _ip,
                         "no_track": _bool})
        if address is None:
            return None
        brd = values.get("brd")
        if brd is not None and brd.version != address.version:
            self.report("error", (*path, "brd"), "the broadcast address is of another family",
                        "use an address of the same family as the VIP, or drop brd",
                        value=str(brd))
            values.pop("brd")
        return VirtualAddress(address=address, **values)

    def peers(self, t: _Table) -> tuple[UnicastPeer, ...]:
        if not t.has("unicast_peer"):
            return ()
        raw = t.raw["unicast_peer"]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.report("error", (*t.path, "unicast_peer"),
                        f"expected an array of addresses, got {describe(raw)}",
                        'write unicast_peer = ["10.12.49.36"]', value=raw)
            return ()
        out = []
        for i, item in enumerate(raw):
            path = (*t.path, "unicast_peer", i)
            if isinstance(item, dict):
                pt = _Table(self, item, path, ("address", "min_ttl", "max_ttl"), "a unicast peer")
                addr = pt.require("address", _ip, 'give the peer: address = "10.12.49.36"')
                ttl = pt.take({"min_ttl": TTL, "max_ttl": TTL})
                if addr is None:
                    continue
                if ttl.get("min_ttl", 0) > ttl.get("max_ttl", 255):
                    self.report("error", (*path, "min_ttl"), "min_ttl is above max_ttl",
                                "min_ttl must not exceed max_ttl", value=ttl["min_ttl"])
                peer = UnicastPeer(addr, **ttl)
            else:
                try:
                    peer = UnicastPeer(_ip(item))
                except _Invalid as exc:
                    self.report("error", path, exc.message, exc.hint, value=item)
                    continue
            out.append(self.record(peer, path))
        return tuple(out)

    def tracked(self, t: _Table, key: str, kind: Callable[..., T]) -> tuple[T, ...]:
        if not t.has(key):
            return ()
        raw = t.raw[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.report("error", (*t.path, key), f"expected an array of names, got {describe(raw)}",
                        f'write {key} = ["name"]', value=raw)
            return ()
        what = "script" if key == "track_script" else "interface"
        out = []
        for i, item in enumerate(raw):
            path = (*t.path, key, i)
            if isinstance(item, str):
                if len(item.split()) != 1:
                    first = item.split()[0] if item.split() else "NAME"
                    self.report("error", path, f"expected a {what} name",
                                f'for a weight write {{ name = "{first}", weight = 50, '
                                "reverse = false }", value=item)
                    continue
                out.append(self.record(kind(name=item), path))
                continue
            et = _Table(self, item, path, ("name", "weight", "reverse"), f"a {key} entry")
            if not et.ok:
                continue
            name = et.require("name", _string, f'give the {what}: name = "..."')
            extra = et.take({"weight": WEIGHT, "reverse": _bool})
            if name is not None:
                out.append(self.record(kind(name=name, **extra), path))
        return tuple(out)

    def authentication(self, t: _Table, version: int) -> Authentication | None:
        if not t.has("authentication"):
            return None
        path = (*t.path, "authentication")
        at = _Table(self, t.raw["authentication"], path, ("auth_type", "auth_pass"),
                    "authentication")
        kind = at.require("auth_type", _choice({"PASS": "PASS", "AH": "AH"}, "auth_type"),
                          'auth_type = "PASS"')
        password = at.require("auth_pass", _string, 'auth_pass = "secret" (same on every node)')
        if kind == "AH":
            self.report("error", (*path, "auth_type"), "IPsec AH authentication is not supported",
                        'use auth_type = "PASS", or no authentication', value="AH")
            return None
        if password is not None and len(password) > 8:
            self.report("warning", (*path, "auth_pass"),
                        "only the first 8 characters are used (as keepalived does)",
                        "shorten it to 8 characters so the config says what is sent")
        if version == 3:
            self.report("warning", path, "VRRP version 3 has no authentication; it is ignored",
                        "remove authentication, or use version = 2")
            return None
        if kind is None or password is None:
            return None
        return Authentication(kind, password[:8])
