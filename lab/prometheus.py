"""A real Prometheus for tests and benchmarks: start it, query it, check dashboards and rules.

Debian's ``/usr/bin/prometheus`` is started with a temporary config and storage (1 s
scrapes and rule evaluation, mailha's rules loaded), optionally inside a lab network
namespace, and queried over its HTTP API with a bounded asyncio client. Every query of the
Grafana dashboard and every rule can then be checked against what the targets export:
``mode="results"`` wants each expression to return series, ``mode="selectors"`` each
series selector inside it (for a healthy cluster, whose alert conditions do not hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from lab.netns import socket_in

REPO = Path(__file__).resolve().parents[1]  # the checkout: deploy/ is beside lab/
RULES = REPO / "deploy" / "prometheus" / "mailha-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "mailha.json"
PROMETHEUS_BIN = "/usr/bin/prometheus"
JOB = "mailha"
GRAFANA_VARIABLES = {  # what Grafana substitutes; matches tests/unit/test_dashboard.py
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
    "$job": JOB, "$node": ".*", "$vrrp_instance": ".*",
}
Mode = Literal["results", "selectors"]


# ---------------------------------------------------------------------- Prometheus harness


class PrometheusError(Exception):
    """Prometheus answered with an error (bad PromQL, failed evaluation) or not at all."""


async def http_get(
    url: str, *, limit: float = 10.0, netns: str | None = None
) -> tuple[int, bytes]:
    """A bounded HTTP/1.0 GET over asyncio streams (no threads, no extra dependency).

    With ``netns`` the connection is made from inside that network namespace.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")

    async def fetch() -> tuple[int, bytes]:
        if netns is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            sock = socket_in(netns)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
            except BaseException:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(f"GET {target} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    return await asyncio.wait_for(fetch(), limit)


@dataclass(frozen=True)
class Prometheus:
    base_url: str
    netns: str | None = None

    async def api(self, path: str, **params: str) -> Any:
        url = f"{self.base_url}{path}" + (f"?{urlencode(params)}" if params else "")
        try:
            _, body = await http_get(url, netns=self.netns)
            reply = json.loads(body)
        except (OSError, TimeoutError, ValueError) as exc:
            raise PrometheusError(f"GET {url}: {exc}") from exc
        if reply.get("status") != "success":
            raise PrometheusError(f"{reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            return [{"metric": {}, "value": data["result"]}]  # scalar or string
        result: list[dict[str, Any]] = data["result"]
        return result

    async def rules(self) -> list[dict[str, Any]]:
        data = await self.api("/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def alerts(self) -> list[dict[str, Any]]:
        data = await self.api("/api/v1/alerts")
        alerts: list[dict[str, Any]] = data["alerts"]
        return alerts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_prometheus(
    targets: Sequence[str],
    workdir: Path,
    *,
    rule_files: Sequence[Path] = (RULES,),
    ready_timeout: float = 60.0,
    netns: str | None = None,
) -> AsyncIterator[Prometheus]:
    """Start Prometheus scraping ``targets`` (host:port) as job "mailha"; stop it afterwards.

    With ``netns`` Prometheus runs (and is queried) inside that network namespace.
    """
    binary = shutil.which("prometheus") or PROMETHEUS_BIN
    if not os.access(binary, os.X_OK):
        raise PrometheusError(f"{binary} missing: install Debian's prometheus package")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": list(targets)}]}],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    wrap = ["ip", "netns", "exec", netns] if netns else []
    proc = await asyncio.create_subprocess_exec(
        *wrap, binary, f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn", stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}", netns)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                status, _ = await http_get(f"{prom.base_url}/-/ready", limit=2, netns=netns)
                if status == 200:
                    break
            if proc.returncode is not None or time.monotonic() > deadline:
                log.flush()
                raise PrometheusError(f"Prometheus not ready within {ready_timeout} s:\n"
                                      f"{(workdir / 'prometheus.log').read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        yield prom
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


# ---------------------------------------------------------------------- queries to check


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation, Grafana variables substituted."""
    dash = json.loads(path.read_text())

    def walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [q for p in panels for q in [p, *walk(p.get("panels", []))]]

    def sub(expr: str) -> str:
        for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
            expr = expr.replace(name, GRAFANA_VARIABLES[name])
        return expr

    found = [(f"panel {p['title']!r} {t['refId']}", sub(t["expr"]))
             for p in walk(dash["panels"]) for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", sub(a["target"]["expr"]))
              for a in dash["annotations"]["list"] if "expr" in a.get("target", {})]
    return found


async def rule_queries(prom: Prometheus) -> list[tuple[str, str]]:
    """(where, PromQL) of every rule as Prometheus loaded it (no YAML parser needed)."""
    rules = await prom.rules()
    return [(f"{r['type']} rule {r['name']}", r["query"]) for r in rules]


SELECTOR = re.compile(
    r'(?<![\w:])((?:mailha_[A-Za-z0-9_]+|mailha:[A-Za-z0-9_:]+|up)(?:\{[^}]*\})?)(?![\w(])'
)


def selectors(expr: str) -> list[str]:
    """Series selectors inside an expression (label names in ``by (...)`` are skipped)."""
    cleaned = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return SELECTOR.findall(cleaned)


async def check_queries(
    prom: Prometheus, queries: Sequence[tuple[str, str]], *, mode: Mode = "results",
    wait: float = 60.0,
) -> dict[str, str]:
    """Poll until every query (or, in "selectors" mode, every selector in it) returns series.

    Returns {where: problem} for what still fails at the deadline; errors are final at once.
    """
    pending: dict[str, list[str]] = {
        where: ([expr] if mode == "results" else selectors(expr) or [expr])
        for where, expr in queries
    }
    problems: dict[str, str] = {}
    deadline = time.monotonic() + wait
    while pending:
        for where, exprs in list(pending.items()):
            empty = []
            for expr in exprs:
                try:
                    if not await prom.query(expr):
                        empty.append(expr)
                except PrometheusError as exc:
                    problems[where] = f"error {exc} in {expr}"
                    break
            if where in problems or not empty:
                del pending[where]
            else:
                pending[where] = empty
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    problems.update({where: f"no series for {exprs}" for where, exprs in pending.items()})
    return problems


async def scrape_and_check(
    metrics_targets: Sequence[str], workdir: Path, *, mode: Mode = "results",
    netns: str | None = None,
) -> None:
    """The whole check against any exporter(s) at host:port: the entry point to reuse."""
    async with running_prometheus(metrics_targets, workdir, netns=netns) as prom:
        queries = dashboard_queries() + await rule_queries(prom)
        problems = await check_queries(prom, queries, mode=mode)
        assert not problems, "\n".join(f"{w}: {p}" for w, p in sorted(problems.items()))
        unhealthy = [(r["name"], r.get("lastError")) for r in await prom.rules()
                     if r["health"] != "ok"]
        assert not unhealthy, unhealthy


