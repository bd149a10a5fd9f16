"""What ``mailha check`` says about the BGP mode of a valid configuration (pure).

keepalived has no BGP, so an admin coming from it (or reading an imported file) needs
the mode spelled out: which services are announced, by which BIRD protocol, on what
condition, and what bird.conf must contain for it to work.
"""

from __future__ import annotations

from mailha.bgp.include import pattern, protocol_name
from mailha.config.model import Config

__all__ = ["explain"]


def explain(config: Config) -> list[str]:
    """Lines describing the BGP mode of ``config`` (none when no service uses it)."""
    services = config.bgp_services
    if not services:
        return []
    bgp = config.bgp
    lines = [f"{config.source}: BGP mode: {len(services)} virtual server"
             f"{'' if len(services) == 1 else 's'} announced through BIRD "
             f"({bgp.bird_socket})"]
    for vs in services:
        assert vs.ip is not None
        lines.append(
            f"  {vs.label}: every director programs it and holds {vs.ip} on lo; "
            f"{protocol_name(bgp.protocol_prefix, vs.ip)} announces {vs.ip} while "
            f"{vs.min_healthy} real server{'' if vs.min_healthy == 1 else 's'} or more "
            "are up and the director is not drained")
    export = f'export where proto ~ "{pattern(bgp.protocol_prefix)}";'
    lines += [
        f'  mailha writes {bgp.include_file}: bird.conf must `include "{bgp.include_file}";`'
        f" and export the routes to the routers ({export}), beside a `protocol device` "
        "(deploy/README.md, the BGP mode)",
        f"  the routes go via {bgp.deadman_interface}, a device that dies with mailha: a "
        f"crashed mailha is withdrawn at once; `mailha drain director` withdraws on purpose",
    ]
    return lines
