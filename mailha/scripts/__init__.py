"""The Postfix check scripts (``postfix-alive``, ``postfix-queue-weight``).

Each module is a standalone program using the standard library only: it runs as an
entry point (``mailha-postfix-alive``), as ``python3 -m mailha.scripts.postfix_alive``,
or copied anywhere as a plain executable file, which is what
``mailha install-checks`` does (to ``/usr/share/mailha/checks`` by default, the path
the example configurations use). The repository's ``checks/`` holds symlinks to them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Installed file name -> module file in this package.
CHECK_SCRIPTS = {
    "postfix-alive": "postfix_alive.py",
    "postfix-queue-weight": "postfix_queue_weight.py",
}

DEFAULT_CHECKS_DIR = Path("/usr/share/mailha/checks")


def install_checks(dest: Path = DEFAULT_CHECKS_DIR) -> list[Path]:
    """Copy the check scripts to ``dest`` as executables (mode 0755); return their paths.

    Rewrites an existing copy (an upgrade), written to a temporary name first and
    renamed, so a check running at that moment sees either the old or the new file.
    """
    here = Path(__file__).resolve().parent
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module in CHECK_SCRIPTS.items():
        target = dest / name
        tmp = dest / f".{name}.tmp"
        tmp.write_bytes((here / module).read_bytes())
        tmp.chmod(0o755)
        os.replace(tmp, target)
        written.append(target)
    return written
