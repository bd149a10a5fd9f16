"""Read, set and restore kernel parameters under /proc/sys, remembering originals.

The daemon changes sysctls to do its job (today ``arp_ignore``/``arp_announce`` for a
DR real server holding the VIP on ``lo``: :mod:`mailha.lvs.host`) and must put them
back when it stops, or a node keeps answering ARP differently after mailha is gone.
:class:`SysctlChanges` records the first value it saw for every key, logs every change
with its reason, and restores in reverse order.

Names use sysctl(8)'s dotted form.  As in sysctl(8), a ``/`` inside a component stands
for a ``.`` in the real name, which matters for VLAN interfaces:
``net.ipv4.conf.eth0/100.arp_ignore`` is ``/proc/sys/net/ipv4/conf/eth0.100/arp_ignore``;
:func:`conf_key` builds such names from an interface name.

A crash skips the restore. So that the next run can still put the admin's values back,
:class:`SysctlChanges` can keep a *journal*: a small JSON file (in the runtime directory,
next to the control socket) holding the originals, rewritten at every first change and
removed after a complete restore. A run that finds a journal adopts its originals
instead of taking the values the crashed run left as the admin's.

Access is a plain read/write of a /proc file: microseconds, so it is done directly on
the event loop.  ``net.*`` entries belong to the network namespace of the calling task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from mailha.errors import MailhaError

__all__ = [
    "SysctlChanges",
    "SysctlError",
    "conf_key",
    "read_journal",
    "read_sysctl",
    "sysctl_path",
    "write_sysctl",
]

log = logging.getLogger(__name__)

PROC_SYS = Path("/proc/sys")
_MISSING = "no such sysctl (module not loaded or interface missing?)"


class SysctlError(MailhaError):
    """A sysctl cannot be read or written; ``reason`` is stable and precise."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"sysctl {name}: {reason}")
        self.name = name
        self.reason = reason


def conf_key(family: int, ifname: str, leaf: str) -> str:
    """``net.ipv{4,6}.conf.<ifname>.<leaf>``, escaping dots in ``ifname`` like sysctl(8)."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family!r}")
    return f"net.ipv{family}.conf.{ifname.replace('.', '/')}.{leaf}"


def sysctl_path(name: str) -> Path:
    """Map a dotted sysctl name to its file, refusing anything that escapes /proc/sys."""
    parts = name.split(".")
    if not name or any(p in ("", "..") for p in parts):
        raise SysctlError(name, "malformed name")
    return PROC_SYS.joinpath(*(p.replace("/", ".") for p in parts))


def read_sysctl(name: str) -> str:
    """The current value, whitespace-normalised (``"4096\\t87380"`` -> ``"4096 87380"``)."""
    path = sysctl_path(name)
    try:
        return " ".join(path.read_text().split())
    except FileNotFoundError:
        raise SysctlError(name, _MISSING) from None
    except OSError as exc:
        raise SysctlError(name, f"cannot read: {exc.strerror or exc}") from None


def write_sysctl(name: str, value: str | int) -> None:
    """Write ``value``; the kernel validates it (EINVAL becomes a :class:`SysctlError`)."""
    path = sysctl_path(name)
    try:
        path.write_text(f"{value}\n")
    except FileNotFoundError:
        raise SysctlError(name, _MISSING) from None
    except PermissionError:
        raise SysctlError(name, "permission denied (needs root in this namespace)") from None
    except OSError as exc:
        raise SysctlError(name, f"kernel refused {value!r}: {exc.strerror or exc}") from None


class SysctlChanges:
    """Sysctl changes made by this process, restorable in reverse order.

    Not a singleton: each subsystem (DR real server, IPVS tuning) may own one and
    restore only what it changed.  Restoring writes back the value seen *before the
    first change*; a value the admin changed since then is overwritten, and logged.
    """

    def __init__(self, journal: Path | None = None) -> None:
        self._originals: dict[str, str] = {}
        self._wanted: dict[str, str] = {}
        self._journal = journal
        if journal is not None:
            self._originals = read_journal(journal)
            kept = self._kept_marker
            on_purpose = kept is not None and kept.exists()
            if kept is not None:
                with contextlib.suppress(OSError):
                    kept.unlink()
            if self._originals:
                values = ", ".join(f"{k}={v}" for k, v in self._originals.items())
                if on_purpose:
                    log.info("the previous run kept its sysctls at stop; %s holds the "
                             "admin's values, restored when mailha releases them: %s",
                             journal, values)
                else:
                    log.warning("an earlier run left sysctls changed without a clean stop "
                                "(a crash?); %s holds the admin's values, restored when "
                                "mailha releases them: %s", journal, values)

    @property
    def _kept_marker(self) -> Path | None:
        """Beside the journal when a clean stop kept the changes on purpose (see :meth:`keep`)."""
        if self._journal is None:
            return None
        return self._journal.with_name(self._journal.name + ".kept")

    def keep(self) -> None:
        """A clean stop leaves the changes in place on purpose: the next run says so
        calmly instead of warning about a crash."""
        marker = self._kept_marker
        if marker is None or not self._originals:
            return
        try:
            marker.touch()
        except OSError as exc:
            log.debug("cannot mark the sysctl journal as kept: %s", exc)

    @property
    def changed(self) -> dict[str, str]:
        """Keys changed so far, with their original values."""
        return dict(self._originals)

    def set(self, name: str, value: str | int, reason: str) -> bool:
        """Set ``name`` to ``value`` unless it already has it; True if it was changed.

        Logs ``set NAME OLD -> NEW (reason)``.  The original value is remembered on the
        first change only, so setting a key twice still restores the admin's value.
        """
        new = " ".join(str(value).split())
        old = read_sysctl(name)
        if old == new:
            log.debug("sysctl %s already %s (%s)", name, new, reason)
            return False
        if name not in self._originals:
            self._originals[name] = old
            self._write_journal()
        write_sysctl(name, new)
        self._wanted[name] = new
        log.info("set %s %s -> %s (%s)", name, old, new, reason)
        return True

    def release(self, name: str) -> SysctlError | None:
        """Put one changed key back (a reload no longer wants it); the error, if any.

        Nothing happens for a key this object did not change. The journal then holds
        the keys still changed (and goes away with the last of them).
        """
        original = self._originals.get(name)
        if original is None:
            return None
        try:
            current = read_sysctl(name)
            if current != original:
                write_sysctl(name, original)
                log.info("restored %s %s -> %s", name, current, original)
        except SysctlError as exc:
            log.warning("could not restore %s to %s: %s", name, original, exc.reason)
            return exc
        del self._originals[name]
        self._wanted.pop(name, None)
        if self._originals:
            self._write_journal()
        elif self._journal is not None:
            with contextlib.suppress(FileNotFoundError):
                self._journal.unlink()
        return None

    def restore(self) -> list[SysctlError]:
        """Put every changed key back, newest first; returns (and logs) what failed.

        Never raises: shutdown must go on even if an interface vanished meanwhile.
        """
        errors: list[SysctlError] = []
        for name in reversed(list(self._originals)):
            original = self._originals[name]
            try:
                current = read_sysctl(name)
                if current != self._wanted.get(name, current):
                    log.warning("sysctl %s was changed behind us to %s; restoring %s anyway",
                                name, current, original)
                if current != original:
                    write_sysctl(name, original)
                    log.info("restored %s %s -> %s", name, current, original)
            except SysctlError as exc:
                log.warning("could not restore %s to %s: %s", name, original, exc.reason)
                errors.append(exc)
        self._originals.clear()
        self._wanted.clear()
        if self._journal is not None and not errors:
            with contextlib.suppress(FileNotFoundError):
                self._journal.unlink()
        return errors

    def _write_journal(self) -> None:
        """Record the originals before changing anything (atomically: tmp + rename)."""
        if self._journal is None:
            return
        tmp = self._journal.with_name(self._journal.name + ".tmp")
        try:
            self._journal.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._originals, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self._journal)
        except OSError as exc:
            log.warning("cannot write the sysctl journal %s: %s (a crash now would leave "
                        "the changed values behind)", self._journal, exc)


def read_journal(path: Path) -> dict[str, str]:
    """The originals a crashed run recorded, or {} (a damaged journal is logged, not fatal)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable sysctl journal %s: %s", path, exc)
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        log.warning("ignoring the sysctl journal %s: not a JSON object of strings", path)
        return {}
    return data
