"""The LVS sections of the config: ``virtual_server_group`` and ``virtual_server`` tables,
with their real servers, tunnels, sorry server and health checkers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from mailha.config.errors import (
    KeyPath,
    format_key,
)
from mailha.config.keys import (
    CHECKER_DEFAULTS_SPEC,
    CHECKER_KINDS,
    CHECKER_SPEC,
    CONNECTION_KEYS,
    MISC_KEYS,
    RS_KEYS,
    RS_SPEC,
    VS_KEYS,
    VS_SPEC,
)
from mailha.config.model import (
    MAGLEV,
    Announce,
    Checker,
    CheckerCommon,
    GlobalConfig,
    LvsMethod,
    MiscCheck,
    Protocol,
    RealServer,
    SmtpCheck,
    SorryServer,
    TcpCheck,
    TunnelOptions,
    TunnelType,
    VirtualServer,
    VirtualServerGroup,
)
from mailha.config.table import BuilderBase, _Table
from mailha.config.values import (
    CHECKSUM,
    LVS_METHOD,
    TUNNEL_TYPE,
    _bool,
    _group_member,
    _Invalid,
    _ip,
    _port,
    _positive_timer,
    _str_list,
    _string,
    describe,
)

T = TypeVar("T")

_MH_INHIBIT = (
    "inhibit_on_failure = false cannot apply to an mh service: deleting a failed real server "
    "changes the Maglev table, and directors that see the failure at different moments (or "
    "restart while it lasts) would then send the same connection to different real servers"
)


class LvsSection(BuilderBase):

    def group(self, name: str, raw: object) -> VirtualServerGroup | None:
        path: KeyPath = ("virtual_server_group", name)
        t = _Table(self, raw, path, ("members",), f"virtual_server_group.{name}")
        members = t.require("members", _str_list, 'members = ["10.12.49.37 25", "fwmark 1"]')
        if members is None:
            return None
        out = []
        for i, line in enumerate(members):
            try:
                out.append(_group_member(line))
            except _Invalid as exc:
                self.report("error", (*path, "members", i), exc.message, exc.hint, value=line)
        if not out:
            return None
        return self.record(VirtualServerGroup(name, tuple(out)), path)

    def virtual_server(
        self, index: int, raw: object, global_: GlobalConfig
    ) -> VirtualServer | None:
        path: KeyPath = ("virtual_server", index)
        t = _Table(self, raw, path, VS_KEYS, f"virtual_server[{index}]")
        if not t.ok:
            return None
        values = t.take(VS_SPEC)
        inherited = t.take(CHECKER_DEFAULTS_SPEC)
        kinds = [k for k in ("ip", "fwmark", "group") if k in t.raw]
        if len(kinds) != 1:
            what = "none" if not kinds else " and ".join(kinds)
            self.report("error", path,
                        f"a virtual_server needs exactly one of ip, fwmark or group; it has {what}",
                        'e.g. ip = "10.12.49.37" with port = 25, or fwmark = 1, or group = "mail"')
        if "port" in values and "ip" not in t.raw:
            self.report("error", (*path, "port"), "port only goes with ip",
                        "remove port: fwmark and group services take ports from the mark/group",
                        value=values["port"])
            values.pop("port")
        if "ip" in values and "port" not in t.raw and "persistence_timeout" not in values:
            self.report("error", path, 'missing "port" (only a persistent service may omit it)',
                        "add port = 25, or set persistence_timeout for an all-ports service")
        self.announce_rules(t, values)
        method = values.get("lvs_method", LvsMethod.NAT)
        values["tunnel"] = self.tunnel(t, method)
        flags = values.get("sched_flags", frozenset())
        sched = values.get("lvs_sched", "wlc")
        for flag in sorted(flags):
            family = flag.split("-")[0]
            if family in ("sh", "mh") and sched != family:
                self.report("warning", (*path, "sched_flags"),
                            f'"{flag}" only affects the {family} scheduler, not {sched}',
                            f'remove it, or use lvs_sched = "{family}"', value=sorted(flags))
        if sched == MAGLEV:
            self.maglev(t, values)
        if values.get("ops") and values.get("protocol", Protocol.TCP) is not Protocol.UDP:
            self.report("error", (*path, "ops"), "one-packet scheduling only works for UDP",
                        "remove ops, or set protocol = \"UDP\"", value=True)
            values.pop("ops")
        if values.get("hysteresis", 0) >= values.get("quorum", 1) and "hysteresis" in values:
            self.report("error", (*path, "hysteresis"), "hysteresis must be below quorum",
                        "use a hysteresis smaller than quorum", value=values["hysteresis"])
        for key in ("quorum_up", "quorum_down"):
            cmd = self.script_command(t, key, global_)
            if cmd is not None:
                values[key] = cmd
        values["sorry_server"] = self.sorry_server(t)
        rs_raw = t.raw.get("real_server", [])
        if isinstance(rs_raw, dict):
            rs_raw = [rs_raw]
        if not isinstance(rs_raw, list):
            self.report("error", (*path, "real_server"),
                        f"expected an array of tables, got {describe(rs_raw)}",
                        "write [[virtual_server.real_server]] tables", value=rs_raw)
            rs_raw = []
        reals = []
        for j, item in enumerate(rs_raw):
            rs = self.real_server((*path, "real_server", j), item, values, inherited, global_)
            if rs is not None:
                reals.append(rs)
        vs = VirtualServer(real_servers=tuple(reals), **values)
        return self.record(vs, path)

    def announce_rules(self, t: _Table, values: dict[str, Any]) -> None:
        """``announce``/``min_healthy``: what the BGP mode excludes, reported where written.

        A BGP service is announced by every ready director, so following a VRRP instance
        (one master) contradicts it; it is announced as ``VIP/32``, so it needs ``ip``;
        ``min_healthy`` means nothing to a VRRP service, and ``ha_suspend`` (checks
        suspended while the VIP is elsewhere) nothing to a VIP every director holds.
        """
        path = t.path
        if values.get("announce", Announce.VRRP) is not Announce.BGP:
            if "min_healthy" in values:
                self.report("error", (*path, "min_healthy"),
                            'min_healthy only applies to announce = "bgp"',
                            'remove it, or set announce = "bgp" (a VRRP service uses quorum)',
                            value=values.pop("min_healthy"))
            return
        if "vrrp_instance" in values:
            self.report("error", (*path, "vrrp_instance"),
                        'a service with announce = "bgp" follows no vrrp_instance: every '
                        "ready director announces and programs it",
                        'remove vrrp_instance (or announce = "bgp", for the VRRP mode)',
                        value=values.pop("vrrp_instance"))
        for key in ("fwmark", "group"):
            if key in t.raw:
                self.report("error", (*path, key),
                            f'announce = "bgp" needs ip: BGP announces the VIP as a /32, and '
                            f"a {key} service has no single address",
                            'use ip = "..." with port, or announce = "vrrp"', value=t.raw[key])
        if values.get("ha_suspend"):
            self.report("error", (*path, "ha_suspend"),
                        'ha_suspend does not apply to announce = "bgp": every director holds '
                        "the VIP, so checks are never suspended",
                        "remove ha_suspend", value=values.pop("ha_suspend"))

    def maglev(self, t: _Table, values: dict[str, Any]) -> None:
        """An ``mh`` service keeps failed and drained real servers at weight 0.

        Every director must keep the same Maglev table (:mod:`mailha.lvs.maglev`), so a
        real server that fails its checks or is drained is quiesced in place, never
        deleted: ``inhibit_on_failure`` is true for every real server of the service,
        and saying false is an error rather than a setting silently overruled. A
        quiesced server keeps its share of the table, so without ``mh-fallback`` the
        connections hashed to it would be refused instead of going to another server.
        """
        if "mh-fallback" not in values.get("sched_flags", frozenset()):
            self.report("error", (*t.path, "sched_flags"),
                        'lvs_sched = "mh" needs "mh-fallback": a real server that fails or is '
                        "drained stays in the Maglev table at weight 0 (so that every director "
                        "keeps the same table), and without mh-fallback the connections hashed "
                        "to it are refused instead of going to another real server",
                        'sched_flags = ["mh-fallback", "mh-port"] (mh-port: the client\'s port '
                        "is hashed too, so one busy relay does not land on one real server)",
                        value=sorted(values.get("sched_flags", ())))
        if values.get("inhibit_on_failure") is False:
            self.report("error", (*t.path, "inhibit_on_failure"), _MH_INHIBIT,
                        "remove inhibit_on_failure: an mh service always keeps failed real "
                        "servers at weight 0", value=False)
        values["inhibit_on_failure"] = True

    def tunnel(self, t: _Table, method: LvsMethod) -> TunnelOptions | None:
        if not t.has("tunnel"):
            return None
        path = (*t.path, "tunnel")
        if method is not LvsMethod.TUN:
            self.report("error", path, "tunnel options need lvs_method = \"TUN\"",
                        'set lvs_method = "TUN", or remove tunnel')
            return None
        tt = _Table(self, t.raw["tunnel"], path, ("type", "port", "checksum"), "tunnel")
        values = tt.take({"type": TUNNEL_TYPE, "port": _port, "checksum": CHECKSUM})
        kind = values.get("type", TunnelType.IPIP)
        if kind is TunnelType.GUE and "port" not in values and tt.ok and not tt.has("port"):
            self.report("error", path, "a GUE tunnel needs a port", 'add port = 6080')
        if "port" in values and kind is not TunnelType.GUE:
            self.report("error", (*path, "port"), "only GUE tunnels take a port",
                        "remove port, or use type = \"gue\"", value=values["port"])
            values.pop("port")
        if "checksum" in values and kind is TunnelType.IPIP:
            self.report("error", (*path, "checksum"), "ipip tunnels have no checksum option",
                        'use type = "gue" or "gre", or remove checksum', value=values["checksum"])
            values.pop("checksum")
        if values.get("checksum") == "remcsum" and kind is TunnelType.GRE:
            self.report("error", (*path, "checksum"), "GRE tunnels do not support remcsum",
                        'use "csum" or "nocsum"', value="remcsum")
            values.pop("checksum")
        return TunnelOptions(**values)

    def sorry_server(self, t: _Table) -> SorryServer | None:
        if not t.has("sorry_server"):
            return None
        path = (*t.path, "sorry_server")
        st = _Table(self, t.raw["sorry_server"], path, ("ip", "port", "lvs_method", "inhibit"),
                    "sorry_server")
        ip = st.require("ip", _ip, 'sorry_server = { ip = "10.12.49.50", port = 25 }')
        values = st.take({"port": _port, "lvs_method": LVS_METHOD, "inhibit": _bool})
        if ip is None:
            return None
        return self.record(SorryServer(ip, **values), path)

    def real_server(
        self, path: KeyPath, raw: object, vs: Mapping[str, Any], inherited: Mapping[str, Any],
        global_: GlobalConfig,
    ) -> RealServer | None:
        t = _Table(self, raw, path, RS_KEYS, format_key(path))
        if not t.ok:
            return None
        ip = t.require("ip", _ip, 'ip = "10.12.49.35"')
        values = t.take(RS_SPEC)
        own = t.take({**CHECKER_DEFAULTS_SPEC, "delay_loop": _positive_timer})
        method = values.setdefault("lvs_method", vs.get("lvs_method", LvsMethod.NAT))
        if t.has("tunnel"):
            values["tunnel"] = self.tunnel(t, method)
        elif method is LvsMethod.TUN:
            values["tunnel"] = vs.get("tunnel") or TunnelOptions()
        values.setdefault("port", vs.get("port"))
        if vs.get("lvs_sched") == MAGLEV:
            if values.get("inhibit_on_failure") is False:
                self.report("error", (*path, "inhibit_on_failure"), _MH_INHIBIT,
                            "remove inhibit_on_failure: an mh service always keeps failed "
                            "real servers at weight 0", value=False)
            values["inhibit_on_failure"] = True
        values.setdefault("inhibit_on_failure", vs.get("inhibit_on_failure", False))
        values.setdefault("alpha", vs.get("alpha", False))
        upper, lower = values.get("uthreshold", 0), values.get("lthreshold", 0)
        if upper and lower > upper:
            self.report("error", (*path, "lthreshold"), "lthreshold is above uthreshold",
                        "lthreshold must not exceed uthreshold (0 means no limit)", value=lower)
        for key in ("notify_up", "notify_down"):
            cmd = self.script_command(t, key, global_)
            if cmd is not None:
                values[key] = cmd
        # The chain of defaults for checker options: real_server, then virtual_server.
        defaults = {**inherited, **own}
        defaults.setdefault("delay_loop", vs.get("delay_loop", 60.0))
        defaults.setdefault("alpha", values["alpha"])
        defaults.setdefault("log_all_failures", global_.checker_log_all_failures)
        checkers: list[Checker] = []
        for kind in [k for k in t.raw if k in CHECKER_KINDS]:
            entries = t.raw[kind]
            if isinstance(entries, dict):
                entries = [entries]
            if not isinstance(entries, list):
                self.report("error", (*path, kind), f"expected a table, got {describe(entries)}",
                            f"write [[virtual_server.real_server.{kind}]]", value=entries)
                continue
            for k, entry in enumerate(entries):
                checker = self.checker(kind, (*path, kind, k), entry, defaults, global_)
                if checker is not None:
                    checkers.append(self.record(checker, (*path, kind, k)))
        if ip is None:
            return None
        return self.record(RealServer(ip=ip, checkers=tuple(checkers), **values), path)

    def checker(
        self, kind: str, path: KeyPath, raw: object, defaults: Mapping[str, Any],
        global_: GlobalConfig,
    ) -> Checker | None:
        misc = kind == "MISC_CHECK"
        known = (CHECKER_SPEC.keys() - CONNECTION_KEYS if misc else CHECKER_SPEC.keys()) | (
            MISC_KEYS if misc else {"helo_name"} if kind == "SMTP_CHECK" else set()
        )
        t = _Table(self, raw, path, known, kind)
        if not t.ok:
            return None
        spec = {k: v for k, v in CHECKER_SPEC.items() if k in known}
        values = {**defaults, **t.take(spec)}
        if misc:
            values.setdefault("retry", 0)
            if not t.has("misc_path"):
                self.report("error", path, 'a MISC_CHECK needs "misc_path"',
                            'misc_path = "/usr/share/mailha/checks/postfix-queue-weight"')
                return None
            command = self.script_command(t, "misc_path", global_, user_keys=True)
            extra = t.take({"misc_timeout": _positive_timer, "misc_dynamic": _bool})
            extra.setdefault("misc_timeout", values.get("delay_loop", 60.0))
            if command is None:
                return None
            return MiscCheck(misc_path=command, common=CheckerCommon(**values), **extra)
        common = CheckerCommon(**values)
        if kind == "SMTP_CHECK":
            helo = t.get("helo_name", _string)
            return SmtpCheck(common, helo) if helo else SmtpCheck(common)
        return TcpCheck(common)
