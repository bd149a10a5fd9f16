"""The package's one base exception.

Every error mailha raises on purpose derives from :class:`MailhaError`, so a caller (the
daemon's start-up, a script using the importer) can tell "mailha refused or failed, and
says why" from a bug, with one ``except``. Errors that are also a kind of built-in
exception (a ``ValueError`` for a bad parameter) keep that base too.
"""

from __future__ import annotations

__all__ = ["MailhaError"]


class MailhaError(Exception):
    """Something mailha refused or could not do; the message says what and why."""
