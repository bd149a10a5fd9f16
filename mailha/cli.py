"""The ``mailha`` command: serve, check, status, reload, drain, undrain, import-keepalived,
install-checks. (The demo is not part of the product: ``scripts/demo`` in a checkout.)

Each subcommand imports its machinery lazily, so ``mailha --version`` and ``mailha check``
stay fast and work on a machine without root or netlink.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mailha import __version__

DESCRIPTION = """\
mailha turns two or more Postfix servers into one highly available, load-balanced SMTP
service behind a floating virtual IP. VRRP (v2/v3, interoperable with keepalived) moves
the VIP; the master programs Linux IPVS so mail is spread over every healthy node, each
judged by real SMTP health checks.
"""

EPILOG = """\
files:
  /etc/mailha/mailha.toml   the node's configuration (see config/reference.toml)
  /run/mailha/mailha.sock   control socket used by `status` and `reload`

exit status:
  0 success; 1 configuration or runtime error; 2 usage error; 3 daemon not running

examples:
  mailha check /etc/mailha/mailha.toml
  mailha check node1.toml node2.toml        # also cross-checks the two nodes
  mailha serve /etc/mailha/mailha.toml      # under systemd: deploy/systemd/mailha.service
  mailha import-keepalived /etc/keepalived/keepalived.conf > mailha.toml
  mailha install-checks                     # after pip install: the Postfix check scripts
  mailha status --json
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mailha",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mailha {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run VRRP, health checks and IPVS for CONFIG in the foreground, logging to "
        "stderr (journald-friendly). SIGTERM/SIGINT: clean shutdown (releases the VIP and "
        "sends a priority-0 advert so the peer takes over at once). SIGHUP: reload CONFIG; "
        "an invalid new config is logged and the running one kept.",
    )
    s.add_argument("config", type=Path, help="the node's TOML configuration")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    c = sub.add_parser(
        "check",
        help="validate configuration files",
        description="Validate each CONFIG and print every error and warning with file, line "
        "and key. With several files (the nodes of one cluster) also check them against each "
        "other: same VRID must agree on advert_int, version and VIPs; equal priorities are "
        "warned about. Exit status 1 if any error was found.",
    )
    c.add_argument("configs", type=Path, nargs="+", metavar="CONFIG")
    c.add_argument(
        "--host",
        action="store_true",
        help="also check against this machine (interfaces exist, unicast_src_ip is ours, "
        "scripts exist and, if run as root, only root can modify them)",
    )

    st = sub.add_parser(
        "status",
        help="show the running daemon's state",
        description="Show VRRP instances, the IPVS table and each checker's last result, read "
        "from the running daemon's control socket.",
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--socket", type=Path, default=Path("/run/mailha/mailha.sock"))

    r = sub.add_parser(
        "reload",
        help="ask the running daemon to reload its configuration",
        description="Like SIGHUP, but waits for the outcome and prints the errors if the new "
        "configuration was rejected (the daemon then keeps running the old one).",
    )
    r.add_argument("--socket", type=Path, default=Path("/run/mailha/mailha.sock"))

    dr = sub.add_parser(
        "drain",
        help="take a real server out of rotation for maintenance (weight 0)",
        description="Set the real server's IPVS weight to 0 on this node, the VRRP master "
        "that programs its service: no new session goes to it, established ones go on. "
        "With --wait, wait until its active sessions reach 0 (exit 1 if some remain when "
        "the wait ends). TARGET: local (this node's own addresses), IP, IP:PORT or "
        "[IPv6]:PORT. Kept across reloads; `mailha undrain TARGET` reverses it. On a node "
        "that is not the master it fails and names the master to run it on. "
        "TARGET director (BGP mode): withdraw every VIP this director announces by BGP, "
        "then wait for the active sessions of its BGP services to end.",
    )
    dr.add_argument("target", metavar="TARGET")
    dr.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to SECONDS for the active sessions to end (default: 0)")
    dr.add_argument("--socket", type=Path, default=Path("/run/mailha/mailha.sock"))
    ud = sub.add_parser(
        "undrain",
        help="give a drained real server its weight back",
        description="Reverse `mailha drain TARGET`: the real server gets its configured "
        "weight again (if its health checks pass); `undrain director` announces this "
        "director's BGP VIPs again (each while it is ready).",
    )
    ud.add_argument("target", metavar="TARGET")
    ud.add_argument("--socket", type=Path, default=Path("/run/mailha/mailha.sock"))

    i = sub.add_parser(
        "import-keepalived",
        help="convert a keepalived.conf into mailha TOML",
        description="Convert keepalived.conf (with its include files, @conditional lines and "
        "$parameters) into mailha TOML on stdout. Keywords that cannot be carried over are "
        "listed on stderr with file:line and in a comment at the top of the output.",
    )
    i.add_argument("path", type=Path, metavar="KEEPALIVED_CONF")
    i.add_argument("--config-id", help="keepalived's -i: selects @ID conditional lines")

    ic = sub.add_parser(
        "install-checks",
        help="copy the Postfix check scripts to /usr/share/mailha/checks",
        description="Copy the Postfix check scripts shipped in the Python package "
        "(postfix-alive, postfix-queue-weight) to DIR as executables, where the example "
        "configurations' vrrp_script and MISC_CHECK expect them. For a pip install; the "
        "Debian package installs them itself. Running it again updates the copies.",
    )
    ic.add_argument("--dest", type=Path, default=Path("/usr/share/mailha/checks"),
                    metavar="DIR", help="target directory (default: /usr/share/mailha/checks)")

    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    if args.command == "check":
        from mailha.check import check_command

        return check_command(args.configs, out=sys.stdout, host_checks=args.host)
    if args.command == "serve":
        from mailha.daemon import serve_command

        return serve_command(args.config, log_level=args.log_level)
    if args.command in ("status", "reload"):
        from mailha.control import client_command

        return client_command(args.command, args.socket, json_output=getattr(args, "json", False))
    if args.command in ("drain", "undrain"):
        from mailha.control import client_command

        wait = getattr(args, "wait", 0.0)
        if wait < 0:
            print("mailha: --wait must be 0 or more seconds", file=sys.stderr)
            return 2
        return client_command(args.command, args.socket, args={"target": args.target,
                                                               "wait": wait},
                              timeout=wait + 30)
    if args.command == "import-keepalived":
        from mailha.importer import import_command

        return import_command(args.path, out=sys.stdout, err=sys.stderr, config_id=args.config_id)
    if args.command == "install-checks":
        from mailha.scripts import install_checks

        try:
            for path in install_checks(args.dest):
                print(path)
        except OSError as exc:
            print(f"mailha install-checks: {exc}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
