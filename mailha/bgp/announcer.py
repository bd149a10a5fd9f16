"""The BGP mode's adapter: readiness in, BIRD protocols enabled or disabled, kept so.

Start (:meth:`Announcer.start`): write the include file if it changed (atomically),
``configure`` BIRD if it did (or if BIRD does not know the protocols yet: a BIRD started
before the file existed; still unknown after that is a start-up error, since bird.conf
does not include the file), ``disable`` every ``mailha_*`` protocol (whatever a crashed
run left enabled), then create the dead-man device. From then on each VIP's protocol is
enabled while the VIP is ready (:func:`mailha.bgp.readiness.readiness`) and disabled
otherwise: at once when :meth:`Announcer.poke` is called (after each IPVS reconcile, a
drain), and again every ``reapply_interval`` whatever happened, which repairs a BIRD
restart or a ``birdc configure`` by hand (BIRD resets the protocols to the file's
``disabled`` on both). Stop (:meth:`Announcer.stop`): disable them all first, then drop
the device; the daemon tears IPVS down after that.

BIRD being unreachable is not fatal: mailha keeps serving, reports it (status,
``mailha_bird_up``) and retries at each re-apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mailha.bgp.birdctl import BirdClient, BirdError, BirdRefused, ProtocolRow
from mailha.bgp.deadman import DeadmanDevice
from mailha.bgp.include import pattern, protocol_name, render
from mailha.bgp.readiness import ServiceInput, VipReadiness, readiness
from mailha.config.model import Config
from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.metrics import BgpSnapshot, Metrics
from mailha.resource import AsyncResource
from mailha.tasks import bounded, cancel_and_wait, stop_requested

__all__ = ["Announcer", "BgpSetupError", "write_if_changed"]

log = logging.getLogger("mailha.bgp")

#: Bound on the withdrawal at stop: BIRD answers in milliseconds, or is gone.
WITHDRAW_TIMEOUT = 5.0


class BgpSetupError(MailhaError):
    """The BGP mode cannot start: the include file, BIRD's configuration or the device."""


def write_if_changed(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` atomically (readable by BIRD's user); True if it changed."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BgpSetupError(f"cannot read {path}: {exc.strerror}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except FileNotFoundError:
        raise BgpSetupError(f"the directory of include_file {path} does not exist "
                            "(is bird2 installed? set [bgp] include_file)") from None
    except OSError as exc:
        raise BgpSetupError(f"cannot write into {path.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


class Announcer(AsyncResource):
    """Drives BIRD for the ``announce = "bgp"`` services of one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics,
        inputs: Callable[[], Sequence[ServiceInput]],
        drained: bool = False,
        client: BirdClient | None = None,
        deadman: DeadmanDevice | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._inputs = inputs
        self.drained = drained
        self.client = client or BirdClient(config.bgp.bird_socket)
        self.deadman = deadman or DeadmanDevice(config.bgp.deadman_interface)
        self.verdicts: tuple[VipReadiness, ...] = ()
        self.bird_error: str | None = "not queried yet"
        self.rows: tuple[ProtocolRow, ...] = ()
        self._announced: dict[str, bool] = {}
        self._checked = False  # BIRD knows our protocols (checked since the last connect)
        self._pending_configure = False  # the include file changed; BIRD not told yet
        self._configured = False  # a configure was tried for the current include file
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.stop()

    async def start(self) -> None:
        """Include file, BIRD, every protocol disabled, the device; then the re-apply loop.

        Raises :class:`BgpSetupError` (the daemon does not start) when the file cannot
        be written, BIRD answers but does not know the protocols after a configure, or
        the device cannot be made. BIRD not answering only delays the announcements.
        """
        self._write_include()
        try:
            await self._check_bird()
            withdrawn = await self.client.disable_matching(self._pattern)
            if withdrawn:
                log.warning("BIRD had %d mailha protocol%s enabled at start (a previous run "
                            "ended without withdrawing): disabled", withdrawn,
                            "" if withdrawn == 1 else "s")
        except BirdError as exc:
            self._bird_down(exc)
        try:
            await self.deadman.open()
        except MailhaError as exc:
            raise BgpSetupError(f"dead-man device: {exc}") from None
        log.info("BGP mode: %d VIP%s through BIRD at %s, routes via %s",
                 len(self._vips()), "" if len(self._vips()) == 1 else "s",
                 self.config.bgp.bird_socket, self.deadman.name)
        self._publish()
        self._task = asyncio.create_task(self._loop(), name="bgp announcer")

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        return () if self._task is None else (self._task,)

    async def stop(self) -> None:
        """Withdraw every VIP (disable all), then drop the device; bounded, never raises."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait([self._task], within=3, what="BGP announcer")
            self._task = None
        withdrawn = await bounded(self.client.disable_matching(self._pattern),
                                  within=WITHDRAW_TIMEOUT, what="withdrawing the BGP routes")
        if withdrawn is not None:
            log.info("withdrew the BGP announcements (%d protocol%s disabled)", withdrawn,
                     "" if withdrawn == 1 else "s")
        self.deadman.close()  # a route left enabled by a failed withdrawal dies here
        await self.client.close()
        self.metrics.bgp = None

    async def reconfigure(self, config: Config) -> None:
        """A reload: a new VIP set rewrites the file and reconfigures BIRD; then re-apply."""
        old = self.config
        self.config = config
        if old.bgp.bird_socket != config.bgp.bird_socket:
            await self.client.close()
            self.client = BirdClient(config.bgp.bird_socket)
            self._checked = False
        if old.bgp.deadman_interface != config.bgp.deadman_interface:
            self.deadman.close()
            self.deadman = DeadmanDevice(config.bgp.deadman_interface)
            await self.deadman.open()
        gone = set(self._names_of(old)) - set(self._names())
        if old.bgp.protocol_prefix != config.bgp.protocol_prefix:
            gone = {pattern(old.bgp.protocol_prefix)}
        for name in sorted(gone):  # withdrawn now, not when BIRD next reads the file
            try:
                await self.client.disable_matching(name)
            except BirdError as exc:
                log.warning("could not disable %s in BIRD: %s", name, exc)
        self._write_include()
        with contextlib.suppress(BirdError, BgpSetupError):  # reported by the apply below
            await self._check_bird()
        self.poke()

    def poke(self) -> None:
        """Readiness may have changed: apply it now rather than at the next interval."""
        self._poked.set()

    # ------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while not self._stopping and not stop_requested():
            try:
                await self.apply()
            except Exception:  # a bug must not end the announcements' repair
                log.exception("BGP announcer: applying readiness failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.bgp.reapply_interval):
                    await self._poked.wait()
            self._poked.clear()

    async def apply(self) -> None:
        """Enable the protocols of ready VIPs, disable the others, read BIRD's view back."""
        self.verdicts = readiness(self._inputs(), drained=self.drained)
        try:
            if not self._checked or self._pending_configure:
                await self._check_bird()
            for verdict in self.verdicts:
                name = protocol_name(self.config.bgp.protocol_prefix, verdict.vip)
                if verdict.ready:
                    await self.client.enable(name)
                else:
                    await self.client.disable(name)
            self.rows = await self.client.protocols()
        except (BirdError, BgpSetupError) as exc:
            self._bird_down(exc)
        else:
            if self.bird_error is not None:
                log.info("BIRD at %s answers again", self.config.bgp.bird_socket)
            self.bird_error = None
        self._publish()

    # ------------------------------------------------------------ BIRD

    async def _check_bird(self) -> None:
        """Make sure BIRD knows every protocol of the include file: ``configure`` when the
        file changed, or once when a protocol is missing (a BIRD started before the file
        existed); :class:`BgpSetupError` if one is still missing after a configure."""
        if self._pending_configure:
            await self._configure()
        missing = self._missing(await self.client.protocols())
        if missing and not self._configured:
            await self._configure()
            missing = self._missing(await self.client.protocols())
        if missing:
            raise BgpSetupError(
                f"BIRD does not know {', '.join(missing)} after reading its configuration: "
                f'bird.conf must contain include "{self.config.bgp.include_file}"; '
                "(deploy/README.md, the BGP mode)")
        self._checked = True

    async def _configure(self) -> None:
        log.info("BIRD: configure (to read %s)", self.config.bgp.include_file)
        self._configured = True
        try:
            await self.client.configure()
        except BirdRefused as exc:
            raise BgpSetupError(str(exc)) from None
        self._pending_configure = False

    def _missing(self, rows: Sequence[ProtocolRow]) -> list[str]:
        known = {r.name for r in rows}
        return [n for n in self._names() if n not in known]

    def _bird_down(self, exc: Exception) -> None:
        if self.bird_error != str(exc):
            log.error("BGP: %s; the VIPs are not announced from this director until it "
                      "is fixed (retrying every %gs)", exc, self.config.bgp.reapply_interval)
        self.bird_error = str(exc)
        self.rows = ()
        if isinstance(exc, BirdError):
            self._checked = False  # a BIRD that comes back may run another configuration

    # ------------------------------------------------------------ state

    @property
    def _pattern(self) -> str:
        return pattern(self.config.bgp.protocol_prefix)

    def _vips(self) -> list[IPAddress]:
        return _vips_of(self.config)

    def _names(self) -> list[str]:
        return self._names_of(self.config)

    @staticmethod
    def _names_of(config: Config) -> list[str]:
        return [protocol_name(config.bgp.protocol_prefix, v) for v in _vips_of(config)]

    def _write_include(self) -> bool:
        text = render(self._vips(), prefix=self.config.bgp.protocol_prefix,
                      interface=self.config.bgp.deadman_interface, source=self.config.source)
        changed = write_if_changed(self.config.bgp.include_file, text)
        if changed:
            self._pending_configure = True
            self._configured = False
            log.info("wrote %s (%d protocol%s)", self.config.bgp.include_file,
                     len(self._vips()), "" if len(self._vips()) == 1 else "s")
        return changed

    def _publish(self) -> None:
        """Metrics, and a log line for each VIP whose announcement changed."""
        up = {r.name for r in self.rows if r.up}
        vips = {}
        for verdict in self.verdicts:
            name = protocol_name(self.config.bgp.protocol_prefix, verdict.vip)
            announced = name in up
            vips[str(verdict.vip)] = (verdict.ready, announced)
            if self._announced.get(name) != announced:
                if announced:
                    log.info("announcing %s by BGP (%s up)", verdict.vip, name)
                elif name in self._announced:
                    log.warning("withdrew %s from BGP: %s", verdict.vip,
                                "; ".join(verdict.reasons) or self.bird_error or "BIRD says so")
                self._announced[name] = announced
        self.metrics.bgp = BgpSnapshot(
            bird_up=self.bird_error is None, drained=self.drained, vips=vips,
            sessions={r.name: r.up for r in self.rows if r.proto == "BGP"})

    def status(self) -> dict[str, Any]:
        """The ``bgp`` section of ``mailha status``."""
        rows = {r.name: r for r in self.rows}
        prefix = self.config.bgp.protocol_prefix
        return {
            "bird": {"socket": str(self.config.bgp.bird_socket), "up": self.bird_error is None,
                     "version": self.client.version, "error": self.bird_error},
            "drained": self.drained,
            "include_file": str(self.config.bgp.include_file),
            "deadman": {"interface": self.deadman.name, "held": self.deadman.held},
            "vips": [{
                "vip": str(v.vip),
                "protocol": protocol_name(prefix, v.vip),
                "ready": v.ready,
                "announced": (row := rows.get(protocol_name(prefix, v.vip))) is not None
                and row.up,
                "reasons": list(v.reasons),
                "services": list(v.services),
            } for v in self.verdicts],
            "sessions": [{"protocol": r.name, "state": r.state, "info": r.info, "up": r.up}
                         for r in self.rows if r.proto == "BGP"],
        }


def _vips_of(config: Config) -> list[IPAddress]:
    return sorted({vs.ip for vs in config.bgp_services if vs.ip is not None},
                  key=lambda a: (a.version, int(a)))
