"""The lab's exception hierarchy: one base class, one subclass per module.

Callers catch :class:`LabError`; the ``reason`` is a short, stable phrase suitable for
tests to match on, and the message adds the variable details (names, exit codes, output).
"""

from __future__ import annotations


class LabError(Exception):
    """Something in the lab could not be set up, run or torn down."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NetnsError(LabError):
    """A namespace, link or process operation failed."""


class PostfixError(LabError):
    """A lab Postfix instance (or smtp-sink) could not be configured, started or stopped."""


class KeepalivedError(LabError):
    """A lab keepalived could not be configured, started or stopped."""


class LoadError(LabError):
    """A load or probe tool was misused or could not run."""
