"""Attach a classic BPF program (:mod:`mailha.net.bpf`) to a socket: the one I/O step.

Used by the VRRP raw socket (peer filter) and the listener watch's sock_diag socket
(destroy-event filter). The kernel copies the program at ``setsockopt`` time, so the
buffer only has to live for the call.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

from mailha.net import bpf

__all__ = ["SO_ATTACH_FILTER", "attach"]

SO_ATTACH_FILTER = 26


def attach(sock: socket.socket, program: Sequence[bpf.Insn]) -> None:
    """``SO_ATTACH_FILTER``; raises OSError as the kernel refuses (EINVAL, ENOMEM, EPERM)."""
    code = bpf.pack(program)
    buf = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(code) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
