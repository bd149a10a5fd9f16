#!/usr/bin/env python3
"""postfix-alive: exit 0 when Postfix is up (master running AND a 220 banner arrives).

For keepalived/mailha ``vrrp_script`` and MISC_CHECK. Exit 1 otherwise, with one line on
stderr saying why. Python 3 standard library only; runs fine as user ``postfix``.

The master process is found through its pid file ($queue_directory/pid/master.pid) and
/proc, not ``postfix status``: that command logs a line to the mail log on every call,
which at one check per second drowns the log.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from typing import NoReturn

BANNER_LIMIT = 64 * 1024


class Down(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2, which misc_dynamic reads as "up"
        print(f"postfix-alive: {message}", file=sys.stderr)
        raise SystemExit(1)


def postfix_dirs(config_dir: str | None) -> tuple[str, str]:
    """Postfix's (queue_directory, data_directory), from postconf."""
    cmd = ["postconf", "-h", "queue_directory", "data_directory"]
    if config_dir:
        cmd[1:1] = ["-c", config_dir]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Down(f"cannot run postconf: {exc}") from None
    lines = out.stdout.split()
    if len(lines) != 2:
        raise Down(f"unexpected postconf output: {out.stdout.strip()!r}")
    return lines[0], lines[1]


def master_running(queue_dir: str, data_dir: str) -> int:
    """The master's pid, or raise Down.

    The pid is in $queue_directory/pid/master.pid (root only, mode 0600) and in
    $data_directory/master.lock (owned by postfix): so both root and the postfix user
    can find it. /proc/PID/stat then tells a live master from a stale pid file or a
    master that has exited but not yet been reaped.
    """
    candidates = (
        os.path.join(queue_dir, "pid", "master.pid"),
        os.path.join(data_dir, "master.lock"),
    )
    unreadable = []
    for pid_file in candidates:
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except FileNotFoundError:
            continue
        except PermissionError:
            unreadable.append(pid_file)
            continue
        except (OSError, ValueError) as exc:
            raise Down(f"cannot read {pid_file}: {exc}") from None
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            raise Down(f"postfix master is not running (stale pid {pid} in {pid_file})") from None
        # "PID (COMM) STATE ...": COMM may hold spaces and parentheses, STATE follows the last ")"
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        state = stat[stat.rfind(")") + 2 :][:1]
        if comm != "master":
            raise Down(f"postfix master is not running (pid {pid} is {comm!r})")
        if state in ("Z", "X"):
            raise Down(f"postfix master is not running (pid {pid} has exited)")
        return pid
    if unreadable:
        raise Down(f"cannot read {' or '.join(unreadable)}: run as root or the postfix user")
    raise Down(f"postfix master is not running (no {candidates[0]})")


def smtp_banner(host: str, port: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise Down(f"no SMTP connection to {host}:{port}: {exc.strerror or exc}") from None
    with sock:
        buf = b""
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").rstrip("\r")
                if not text.startswith("220"):
                    raise Down(f"SMTP banner from {host}:{port} is not 220: {text[:100]!r}")
                if text[3:4] != "-":
                    try:
                        sock.sendall(b"QUIT\r\n")
                    except OSError:
                        pass
                    return text
            if len(buf) > BANNER_LIMIT:
                raise Down(f"SMTP banner from {host}:{port} is too long")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Down(f"no complete SMTP banner from {host}:{port} within {timeout:g}s")
            sock.settimeout(left)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                raise Down(
                    f"no complete SMTP banner from {host}:{port} within {timeout:g}s"
                ) from None
            except OSError as exc:
                raise Down(f"SMTP connection to {host}:{port} failed: {exc.strerror}") from None
            if not chunk:
                raise Down(f"{host}:{port} closed the connection before a banner")
            buf += chunk


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config-dir", default=os.environ.get("MAIL_CONFIG"),
                        help="Postfix configuration directory (default: $MAIL_CONFIG or "
                        "Postfix's default)")
    parser.add_argument("--queue-dir",
                        help="Postfix's queue_directory (with --data-dir: no postconf)")
    parser.add_argument("--data-dir", help="Postfix's data_directory")
    parser.add_argument("--host", default="127.0.0.1", help="SMTP address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=25, help="SMTP port (default 25)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds for the banner to arrive (default 2)")
    parser.add_argument("--no-smtp", action="store_true", help="only check the master process")
    args = parser.parse_args(argv)
    try:
        if args.queue_dir and args.data_dir:
            queue_dir, data_dir = args.queue_dir, args.data_dir
        else:
            queue_dir, data_dir = postfix_dirs(args.config_dir)
        master_running(queue_dir, data_dir)
        if not args.no_smtp:
            smtp_banner(args.host, args.port, args.timeout)
    except Down as exc:
        print(f"postfix-alive: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
