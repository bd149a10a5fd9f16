"""The control socket: ``mailha status`` and ``mailha reload`` talk to the daemon here.

One JSON request per connection (``{"command": "status"}`` or ``{"command": "reload"}``),
one JSON reply, then close — simple enough to drive with ``socat`` in an emergency.
The socket is created mode 0600 in a 0700 directory: the state it shows (and the reload it
triggers) is for root only, like ``ipvsadm``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from mailha.errors import MailhaError
from mailha.socketpath import SOCKET_PATH_FIX, socket_path_problem

log = logging.getLogger("mailha.control")

MAX_REQUEST = 64 * 1024
EXIT_NOT_RUNNING = 3

Handler = Callable[[], Awaitable[Mapping[str, Any]]]
#: A command that takes arguments: it receives the whole JSON request.
CommandHandler = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]]


class ControlServer:
    """Serves ``status`` and ``reload`` from the daemon's own event loop."""

    def __init__(self, path: Path, *, status: Handler, reload: Handler,
                 commands: dict[str, CommandHandler] | None = None) -> None:
        self.path = path

        def plain(handler: Handler) -> CommandHandler:
            return lambda _request: handler()

        self._handlers: dict[str, CommandHandler] = {
            "status": plain(status), "reload": plain(reload), **(commands or {})}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on the socket path, replacing only a stale socket left by a crash.

        Anything else already at the path is someone's data or another daemon, so it
        is refused with :class:`ControlSocketError`, never removed (issue 9, defect 6).
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await _remove_stale(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        """Stop listening and remove the socket -- only if this server created it."""
        if self._server is None:
            return  # never bound (start failed or not called): the path is not ours
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        if socket_path_problem(self.path) is None:
            _unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply: Mapping[str, Any]
        try:
            async with asyncio.timeout(5):  # not wait_for: it can swallow a cancel (gh-86296)
                line = await reader.readline()
            reply = await self._dispatch(line)
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> Mapping[str, Any]:
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": "request too long"}
        try:
            request = json.loads(line or b"{}")
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"request is not JSON: {exc}"}
        command = request.get("command") if isinstance(request, dict) else None
        handler = self._handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            return {"ok": False, "error": f"unknown command {command!r}; use one of {known}"}
        try:
            return await handler(request)
        except Exception as exc:  # the daemon must outlive a failing status handler
            log.exception("control command %s failed", command)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class ControlSocketError(MailhaError, RuntimeError):
    """The control socket path holds something that must not be replaced."""


def _is_socket(path: Path) -> bool:
    """True for a socket, False for nothing; anything else raises ControlSocketError."""
    problem = socket_path_problem(path)
    if problem is not None:
        raise ControlSocketError(f"control socket {path} {problem}. Fix: {SOCKET_PATH_FIX}.")
    return path.is_socket()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _remove_stale(path: Path) -> None:
    """Unlink ``path`` if it is a socket nobody answers on; refuse anything else there."""
    if not _is_socket(path):
        return  # nothing there
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1)
    except (ConnectionRefusedError, FileNotFoundError):
        _unlink(path)  # stale: left by a daemon that died without cleaning up
        return
    except (OSError, TimeoutError) as exc:
        reason = "no answer within 1 s" if isinstance(exc, TimeoutError) else str(exc)
        raise ControlSocketError(
            f"control socket {path} exists and cannot be probed ({reason}); not replacing it."
            " Fix: check whether another mailha is running, then remove it by hand."
        ) from None
    writer.close()
    raise ControlSocketError(
        f"control socket {path} is in use: is another mailha running? Stop it, or set "
        "[control] socket to another path."
    )


def request(path: Path, command: str, *, timeout: float = 30.0,
            args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send one command and return the reply (blocking; for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps({**(args or {}), "command": command}).encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks))
    if not isinstance(reply, dict):
        raise ValueError("reply is not a JSON object")
    return reply


def client_command(command: str, path: Path, *, json_output: bool = False,
                   args: dict[str, Any] | None = None, timeout: float = 30.0) -> int:
    try:
        reply = request(path, command, args=args, timeout=timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        print(
            f"mailha: the daemon is not running (no listener on {path}).\n"
            "Start it with `systemctl start mailha` or `mailha serve CONFIG`.",
            file=sys.stderr,
        )
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(f"mailha: permission denied on {path}: run as root.", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"mailha: no usable reply from {path}: {exc}", file=sys.stderr)
        return 1
    if json_output:
        print(json.dumps(reply, indent=2, default=str))
    elif command == "status":
        render_status(reply, sys.stdout)
    elif command in ("drain", "undrain"):
        if reply.get("ok"):
            print(reply.get("message", command + "ed"))
        else:
            print(f"mailha: {command}: {reply.get('error', '?')}", file=sys.stderr)
    else:
        if reply.get("ok"):
            print(reply.get("message", "reloaded"))
        else:
            print(f"mailha: reload rejected: {reply.get('error', '?')}", file=sys.stderr)
            for line in reply.get("diagnostics", []):
                print(f"  {line}", file=sys.stderr)
    return 0 if reply.get("ok", False) else 1


def render_status(reply: dict[str, Any], out: TextIO) -> None:
    """The human view of ``status``: instances, the IPVS table, then the checkers."""
    if not reply.get("ok"):
        out.write(f"error: {reply.get('error')}\n")
        return
    out.write(f"mailha {reply.get('version', '?')} on {reply.get('router_id', '?')}"
              f", config {reply.get('config', '?')}\n")
    _render_health(reply, out)
    out.write("\n")
    out.write("VRRP instances\n")
    for inst in reply.get("instances", []):
        out.write(
            f"  {inst['name']:<16} {inst['state']:<7} prio {inst['priority']:>3}"
            f" (base {inst['base_priority']})  vrid {inst['vrid']}  if {inst['interface']}"
            f"  master {inst.get('master') or '-'}  vips {', '.join(inst.get('vips', []))}\n"
        )
        for line in tracking_lines(inst):
            out.write(f"    {line}\n")
    out.write("\nIPVS (services this node owns)\n")
    services = reply.get("ipvs", [])
    if not services:
        out.write("  (none programmed on this node)\n")
    for svc in services:
        table = svc.get("fingerprint")
        out.write(f"  {svc['service']}  {svc['scheduler']}"
                  + (f"  table fingerprint {table}" if table is not None else "") + "\n")
        for dest in svc.get("destinations", []):
            out.write(
                f"    -> {dest['address']:<22} {dest['forward']:<6} weight {dest['weight']:>5}"
                f"  active {dest.get('active', 0):>5}  inactive {dest.get('inactive', 0):>5}\n"
            )
    _render_bgp(reply.get("bgp"), out)
    out.write("\nHealth checks\n")
    checks = reply.get("checks", [])
    if not checks:
        out.write("  (none configured)\n")
    for chk in checks:
        state = ("UP" if chk.get("up") else "DOWN") + ("/DRAINED" if chk.get("drained") else "")
        out.write(
            f"  {chk['real_server']:<22} {chk['checker']:<11} {state:<5}"
            f" {chk.get('reason', '')}  ({chk.get('age', '?')} s ago)\n"
        )


def _render_bgp(bgp: object, out: TextIO) -> None:
    """The BGP mode: BIRD, the director drain, each VIP and why it is not announced."""
    if not isinstance(bgp, dict):
        return
    bird = bgp.get("bird") or {}
    out.write("\nBGP (through BIRD)\n")
    state = (f"up, {bird.get('version') or 'BIRD'}" if bird.get("up")
             else f"UNREACHABLE: {bird.get('error')}")
    out.write(f"  BIRD {bird.get('socket', '?')}: {state}\n")
    if bgp.get("drained"):
        out.write("  director DRAINED: no VIP announced (mailha undrain director)\n")
    deadman = bgp.get("deadman") or {}
    if not deadman.get("held", True):
        out.write(f"  dead-man device {deadman.get('interface')} NOT held\n")
    for vip in bgp.get("vips", []):
        announced = "ANNOUNCED" if vip.get("announced") else "withdrawn"
        ready = "ready" if vip.get("ready") else "NOT READY"
        out.write(f"  {vip['vip']:<22} {announced:<9} {ready:<9} {vip.get('protocol', '')}\n")
        for reason in vip.get("reasons", []):
            out.write(f"    because {reason}\n")
    sessions = bgp.get("sessions", [])
    if not sessions and bird.get("up"):
        out.write("  (BIRD has no BGP protocol)\n")
    for sess in sessions:
        out.write(f"  session {sess['protocol']:<14} {'UP' if sess.get('up') else 'DOWN':<5}"
                  f" {sess.get('state', '')} {sess.get('info', '')}\n")


def tracking_lines(inst: dict[str, Any]) -> list[str]:
    """Under an instance: why it is in FAULT, then each track script and tracked link.

    Tolerates a reply without these fields (a daemon older than the CLI)."""
    lines = []
    reasons = inst.get("fault_reasons") or []
    if reasons:
        lines.append("FAULT because: " + "; ".join(map(str, reasons)))

    def weighing(item: dict[str, Any]) -> str:
        reverse = "reverse" if item.get("reverse") else ""
        return (f"weight {item.get('weight', 0):>4} {reverse:<7}"
                f"  now {item.get('applied', 0):>+3}")

    for script in inst.get("track_scripts") or []:
        state = {True: "OK", False: "FAILED", None: "INIT"}.get(script.get("ok"), "?")
        if script.get("last_result") is None:
            last = "not run yet"
        else:
            last = f"last run {script['last_result']} {script.get('age', '?')} s ago"
        lines.append(f"script    {script['name']:<16} {state:<7} {weighing(script)}  {last}")
    for link in inst.get("track_interfaces") or []:
        state = {True: "UP", False: "DOWN", None: "UNKNOWN"}.get(link.get("up"), "?")
        name = f"{link['name']} (own)" if link.get("primary") else link["name"]
        lines.append(f"interface {name:<16} {state:<7} {weighing(link)}")
    return lines


def _render_health(reply: dict[str, Any], out: TextIO) -> None:
    """What an admin must not miss: a failure, the config in force, parts not running."""
    if reply.get("failure"):
        out.write(f"  FAILED: {reply['failure']} (stopping; the service manager restarts it)\n")
    digest = reply.get("config_sha256")
    if digest:
        loaded = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(reply.get("config_loaded_at")
                                                                   or 0))
        out.write(f"  config in force: sha256 {digest[:12]}, loaded {loaded}")
        if reply.get("config_file_changed"):
            out.write("; the file on disk differs (edited, or the last reload failed)")
        out.write("\n")
    last = reply.get("last_reload")
    if isinstance(last, dict) and not last.get("ok", True):
        out.write(f"  last reload FAILED: {last.get('error')}\n")
    for name, part in sorted((reply.get("components") or {}).items()):
        if isinstance(part, dict) and not part.get("up"):
            out.write(f"  {name} UNAVAILABLE: {part.get('error')} (retrying; VRRP and IPVS "
                      "run without it)\n")
