"""A disposable lab for mailha: network namespaces, real Postfix and keepalived, load tools.

Everything here exists to exercise mailha against the real programs it has to live with,
on one machine and without touching the host's network: each node is a network namespace
on a private bridge, every name carries a caller-given prefix so parallel runs never
collide, and every resource is owned by an (async) context manager that tears it down on
success, on exceptions and on Ctrl-C. :func:`lab.netns.cleanup_stale` removes what
a crashed (SIGKILLed) run left behind.

Modules: ``netns`` (namespaces, links, processes, in-process setns), ``topology``
(``SeedTopology``), ``postfix`` (``Postfix``, ``SmtpSink``), ``keepalived``,
``smtpload`` (``smtp_source``, ``send_messages``, ``OutageProbe``), ``seedlab``
(``SeedLab``: all of it for the seed scenario in one ``async with``) and, for the
scale-out mode (issue 12), ``bgp`` (``BgpLab``: router, directors, real servers and
client, BIRD everywhere), ``routewatch`` (the router's FIB, time-stamped) and
``smtpflows`` (short sessions and slow DATA transfers from many source addresses).

Used by the integration tests, the benchmarks in ``bench/`` and ``mailha demo``.
"""

from lab.errors import LabError

__all__ = ["LabError"]
