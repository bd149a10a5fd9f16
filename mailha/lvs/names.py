"""How a real server is named in logs, status, metrics labels and drain targets."""

from __future__ import annotations

from mailha.config.model import RealServer, VirtualServer

__all__ = ["rs_label"]


def rs_label(rs: RealServer, vs: VirtualServer) -> str:
    """``IP:PORT`` (``[IPv6]:PORT``), the port inherited from the virtual server if unset."""
    port = rs.port if rs.port is not None else vs.port or 0
    host = f"[{rs.ip}]" if rs.ip.version == 6 else str(rs.ip)
    return f"{host}:{port}"
