"""One base exception: every public exception class of the package derives from MailhaError
(private ones never leave the module that raises them)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mailha
from mailha.errors import MailhaError


def test_every_mailha_exception_is_a_mailha_error() -> None:
    strays = []
    seen = 0
    for info in pkgutil.walk_packages(mailha.__path__, "mailha."):
        if info.name == "mailha.__main__" or info.name.startswith("mailha.scripts."):
            continue  # the CLI entry runs on import; the check scripts stand alone
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                    and not name.startswith("_")):  # private: raised and caught inside

                seen += 1
                if not issubclass(obj, MailhaError):
                    strays.append(f"{module.__name__}.{name}")
    assert seen > 20
    assert strays == []
