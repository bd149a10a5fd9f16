"""``async with`` for the package's (and the lab's) long-lived resources, written once.

A class names what entering and leaving do (:meth:`AsyncResource._enter`,
:meth:`AsyncResource._exit`); the protocol methods, with their three-argument exit
signature, live here instead of in every class.
"""

from __future__ import annotations

from typing import Self

__all__ = ["AsyncResource"]


class AsyncResource:
    """Entering runs :meth:`_enter` and gives the object; leaving runs :meth:`_exit`,
    also when the block raised (the exception goes on)."""

    async def _enter(self) -> None:
        """Set up; nothing by default (for objects that are open once built)."""

    async def _exit(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._enter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit()
