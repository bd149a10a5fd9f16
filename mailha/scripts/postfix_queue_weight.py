#!/usr/bin/env python3
"""postfix-queue-weight: a MISC_CHECK misc_dynamic script weighting a node by its queue.

Exit status (keepalived's misc_dynamic convention: weight = status - 2):

* 1            Postfix is down (master not running) or the queue cannot be read;
* 2 + weight   otherwise, where weight falls linearly from --max-weight (queue at or
               below --queue-low) to --min-weight (queue at or above --queue-high).

The queue is active + deferred entries, counted with os.scandir in the queue
directories: no root, no showq, milliseconds for thousands of entries. Run it as the
``postfix`` user (``user postfix`` in MISC_CHECK), which owns those directories.
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import NoReturn

QUEUES = ("active", "deferred")
MAX_DYNAMIC_WEIGHT = 253  # exit statuses stop at 255


class Down(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's exit 2 would read as "weight 0"
        print(f"postfix-queue-weight: {message}", file=sys.stderr)
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


def count_entries(path: str) -> int:
    """Files under ``path``, descending into hash subdirectories."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    total += count_entries(entry.path)
                else:
                    total += 1
    except FileNotFoundError:
        return 0
    except PermissionError:
        raise Down(f"cannot read {path}: run as the postfix user or root") from None
    return total


def weight_for(queue: int, *, max_weight: int, min_weight: int, low: int, high: int) -> int:
    if queue <= low:
        return max_weight
    if queue >= high:
        return min_weight
    span = (queue - low) / (high - low)
    return round(max_weight - span * (max_weight - min_weight))


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config-dir", default=os.environ.get("MAIL_CONFIG"),
                        help="Postfix configuration directory (default: $MAIL_CONFIG)")
    parser.add_argument("--queue-dir",
                        help="Postfix's queue_directory (with --data-dir: no postconf)")
    parser.add_argument("--data-dir", help="Postfix's data_directory")
    parser.add_argument("--max-weight", type=int, default=100,
                        help="weight with a short queue (default 100, at most 253)")
    parser.add_argument("--min-weight", type=int, default=1,
                        help="weight with a long queue (default 1; 0 drains the node)")
    parser.add_argument("--queue-low", type=int, default=100,
                        help="queue length up to which the weight is --max-weight (default 100)")
    parser.add_argument("--queue-high", type=int, default=5000,
                        help="queue length from which the weight is --min-weight (default 5000)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the queue length and weight on stdout")
    args = parser.parse_args(argv)
    if not 0 <= args.min_weight <= args.max_weight <= MAX_DYNAMIC_WEIGHT:
        parser.error("need 0 <= --min-weight <= --max-weight <= 253")
    if not 0 <= args.queue_low < args.queue_high:
        parser.error("need 0 <= --queue-low < --queue-high")
    try:
        if args.queue_dir and args.data_dir:
            queue_dir, data_dir = args.queue_dir, args.data_dir
        else:
            queue_dir, data_dir = postfix_dirs(args.config_dir)
        master_running(queue_dir, data_dir)
        queue = sum(count_entries(os.path.join(queue_dir, q)) for q in QUEUES)
    except Down as exc:
        print(f"postfix-queue-weight: {exc}", file=sys.stderr)
        return 1
    weight = weight_for(queue, max_weight=args.max_weight, min_weight=args.min_weight,
                        low=args.queue_low, high=args.queue_high)
    if args.verbose:
        print(f"queue {queue} -> weight {weight}")
    return 2 + weight


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
