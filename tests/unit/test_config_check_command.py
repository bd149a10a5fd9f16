"""``mailha check``: what it prints and its exit status."""

from __future__ import annotations

import io
import socket
from pathlib import Path

from mailha.check import check_command

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "config"


def run(*paths: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = check_command(list(paths), out=out, host_checks=False)
    return status, out.getvalue().splitlines()


def test_clean_pair_exits_zero() -> None:
    status, lines = run(ROOT / "config" / "node1.toml", ROOT / "config" / "node2.toml")
    assert status == 0
    assert lines == ["2 files checked: OK"]


def test_seed_pair_warns_but_passes() -> None:
    status, lines = run(DATA / "seed-node1.toml", DATA / "seed-node2.toml")
    assert status == 0
    assert len(lines) == 2
    assert lines[0].startswith(f"{DATA / 'seed-node2.toml'}:11: warning: ")
    assert lines[1] == "2 files checked: 0 errors, 1 warning"


def test_broken_file_lists_every_error_sorted_by_line() -> None:
    status, lines = run(DATA / "broken.toml")
    assert status == 1
    *diags, summary = lines
    assert summary == "1 file checked: 12 errors, 1 warning"  # + a real server with no check
    numbers = [int(line.split(":")[1]) for line in diags]
    assert numbers == sorted(numbers)
    text = "\n".join(diags)
    for fragment in (
        "global.vrrp_version = 4: must be 2 or 3",
        "virtual_router_id = 300",
        "priority = 300: must be 1..255",
        "advert_int = 1.5: VRRP version 2 carries the interval in whole seconds",
        "unicast_peer[0]",
        "mixes IPv4 and IPv6",
        'no vrrp_script is named "chk_postfx"',
        'unknown key "no_accept"',
        'unknown key "lb_algo"',
        'no vrrp_instance is named "VI_mail"',
        'weight = "1": expected an integer, got a string',
    ):
        assert fragment in text, fragment


def test_unreadable_and_good_file_together(tmp_path: Path) -> None:
    status, lines = run(tmp_path / "missing.toml", ROOT / "config" / "node1.toml")
    assert status == 1
    assert lines[0].startswith(f"{tmp_path / 'missing.toml'}: error: (document): cannot read")
    assert lines[-1] == "2 files checked: 1 error, 0 warnings"


def test_host_checks_run_against_this_machine(tmp_path: Path) -> None:
    path = tmp_path / "lo.toml"
    path.write_text(
        '[vrrp_script.chk]\nscript = "/nonexistent/check"\n\n'
        '[vrrp_instance.VI]\ninterface = "lo"\nvirtual_router_id = 9\n'
        'unicast_src_ip = "127.0.0.1"\nunicast_peer = ["127.0.0.2"]\n'
        'virtual_ipaddress = ["127.0.0.9/8"]\ntrack_script = ["chk"]\n'
    )
    out = io.StringIO()
    status = check_command([path], out=out, host_checks=True)
    lines = out.getvalue().splitlines()
    assert status == 0, lines  # lo and 127.0.0.1 exist; a missing script is a warning here
    assert lines[0] == (f"{path}:2: warning: vrrp_script.chk.script = \"/nonexistent/check\": "
                        "/nonexistent/check does not exist. Fix: install it, or fix the path "
                        "(chmod +x /nonexistent/check if it exists).")
    assert lines[-1] == "1 file checked: 0 errors, 1 warning"


def _host_config(tmp_path: Path, sock: Path) -> Path:
    """A config that passes the host checks here (lo, 127.0.0.1), but for its socket."""
    path = tmp_path / "lo.toml"
    path.write_text(
        '[vrrp_instance.VI]\ninterface = "lo"\nvirtual_router_id = 9\n'
        'unicast_src_ip = "127.0.0.1"\nunicast_peer = ["127.0.0.2"]\n'
        'virtual_ipaddress = ["127.0.0.9/8"]\n\n'
        f'[control]\nsocket = "{sock}"\n'
    )
    return path


def test_host_check_rejects_a_regular_file_as_control_socket(tmp_path: Path) -> None:
    """Issue 9, defect 6: `check --host` said OK, then `serve` deleted the file."""
    sock = tmp_path / "notes.txt"
    sock.write_text("precious\n")
    path = _host_config(tmp_path, sock)
    out = io.StringIO()
    status = check_command([path], out=out, host_checks=True)
    lines = out.getvalue().splitlines()
    assert status == 1, lines
    assert lines == [
        f"{path}:9: error: control.socket: {sock} is a regular file, not a socket. "
        "Fix: mailha only replaces a stale socket; move that away, or set [control] socket "
        "to another path.",
        "1 file checked: 1 error, 0 warnings",
    ]
    assert sock.read_text() == "precious\n"


def test_host_check_rejects_a_directory_but_accepts_a_socket(tmp_path: Path) -> None:
    """A socket (stale, or the running daemon's own) is fine: serve probes it itself."""
    sock = tmp_path / "dir"
    sock.mkdir()
    out = io.StringIO()
    assert check_command([_host_config(tmp_path, sock)], out=out, host_checks=True) == 1
    assert f"{sock} is a directory, not a socket" in out.getvalue()
    sock.rmdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    out = io.StringIO()
    assert check_command([_host_config(tmp_path, sock)], out=out, host_checks=True) == 0
    assert out.getvalue().splitlines() == ["1 file checked: OK"]


def test_a_keepalived_conf_is_pointed_at_the_importer() -> None:
    path = Path(__file__).parent / "data" / "keepalived" / "full.conf"
    status, lines = run(path)
    assert status == 1
    assert "this is a keepalived.conf, not a mailha TOML file" in lines[0]
    assert f"mailha import-keepalived {path} > mailha.toml" in lines[0]
