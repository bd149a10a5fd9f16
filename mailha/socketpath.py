"""What may sit at the control socket's path: nothing, or a socket.

``mailha serve`` replaces a stale socket left by a daemon that died; before issue 9
(defect 6) it replaced *anything* at the path, so a typo in ``[control] socket`` could
delete a file. This check is shared by the server (:mod:`mailha.control`) and the host
checks of ``mailha check --host`` and ``mailha serve`` (:mod:`mailha.config.validate`),
and stays free of the daemon's imports so the config checker does not load them.
"""

from __future__ import annotations

import stat
from pathlib import Path

__all__ = ["SOCKET_PATH_FIX", "socket_path_problem"]


def socket_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot become the control socket; None when absent or a socket.

    ``lstat``: a symlink is not followed, so a link to a precious file is refused like
    the file itself. Whether a socket is live is for the server to probe: ``check
    --host`` and a reload legitimately see their own running daemon's socket.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "is inside something that is not a directory"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISSOCK(mode):
        return None
    for test, what in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe (FIFO)")):
        if test(mode):
            return f"is {what}, not a socket"
    return "is a device or other special file, not a socket"


SOCKET_PATH_FIX = (
    "mailha only replaces a stale socket; move that away, or set [control] socket to "
    "another path"
)
