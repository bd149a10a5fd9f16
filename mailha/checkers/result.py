"""What one run of a checker concluded, in a form metrics and logs can rely on.

``reason`` is a short, stable token (``"banner_code_421"``, ``"connection_refused"``)
meant for a metric label and for alerting rules, so it never contains addresses, free
text or numbers other than protocol codes and exit statuses. ``detail`` is the sentence
for a human, and may say anything.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckResult"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of one check: up or down, why, and how long it took.

    ``dynamic_weight`` is set only by a ``misc_dynamic`` MISC_CHECK that exited 2-255:
    the weight (exit status - 2) keepalived gives the real server.
    """

    ok: bool
    reason: str
    detail: str = ""
    duration: float = 0.0
    dynamic_weight: int | None = None

    @classmethod
    def success(
        cls, detail: str = "", duration: float = 0.0, dynamic_weight: int | None = None
    ) -> CheckResult:
        return cls(True, "ok", detail, duration, dynamic_weight)

    @classmethod
    def failure(cls, reason: str, detail: str = "", duration: float = 0.0) -> CheckResult:
        return cls(False, reason, detail, duration)
