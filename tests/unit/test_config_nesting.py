"""Issue 9, defect 5: deep nesting and structural errors, one case at a time.

The mutant fuzzing (``test_config_mutants``) finds these by the thousand; here each
shape is pinned with the exact line (and column) the admin is sent to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailha.config import ConfigError, loads

SOURCE = Path("t.toml")
HEAD = '[global]\nrouter_id = "n1"\n'


def only_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads(text, SOURCE)
    (d,) = info.value.errors
    return str(d)


@pytest.mark.parametrize("depth", [33, 1_000, 100_000])
@pytest.mark.parametrize("open_, close", [("[", "]"), ("{ a = ", " }"), ("[{ a = ", " }]")])
def test_deep_arrays_and_inline_tables_are_a_located_error(
    depth: int, open_: str, close: str
) -> None:
    value = open_ * depth + "1" + close * depth
    text = HEAD + "x = " + value + "\n"
    message = only_error(text)
    opened = [i for i, c in enumerate(value) if c in "[{"]
    column = len("x = ") + opened[32] + 1  # the 33rd bracket: one too many
    assert message.startswith(f"t.toml:3:{column}: error: (document): arrays and inline tables "
                              "nested more than 32 deep."), message


def test_unclosed_deep_nesting_is_reported_where_it_gets_too_deep() -> None:
    assert only_error(HEAD + "\n\nx = " + "[" * 100_000).startswith(
        "t.toml:5:37: error: (document): arrays and inline tables nested more than 32 deep")


@pytest.mark.parametrize("parts", [33, 100_000])
def test_dotted_keys_and_headers_with_too_many_parts(parts: int) -> None:
    dotted = ".".join(["a"] * parts)
    # the column of the dot that starts part 33
    assert only_error(HEAD + dotted + " = 1\n").startswith(
        "t.toml:3:64: error: (document): a key with more than 32 dotted parts")
    assert only_error(f"{HEAD}[{dotted}]\n").startswith(
        "t.toml:3:65: error: (document): a key with more than 32 dotted parts")


def test_depth_added_up_from_shallow_pieces_is_caught_after_parsing() -> None:
    """No key and no bracket run is too long, but together they nest 60+ levels."""
    thirty = ".".join(["a"] * 30)
    message = only_error(f"{HEAD}[control]\nsocket = {{ {thirty} = [{{ {thirty} = 1 }}] }}\n")
    assert message.startswith("t.toml:4: error: control.socket.a...: nested more than 32 "
                              "levels deep."), message


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    brackets = "[{" * 40
    text = (f'[global]\nrouter_id = "{brackets}"  # {brackets}\n'
            f"notification_email_from = '''\n{brackets}\n'''\n"
            f'vrrp_version = 2 # "unbalanced\n'
            f'"{"." * 40}" = 1\n')
    assert only_error(text).startswith(f't.toml:7: error: global."{"." * 40}": unknown key')


def test_a_legitimately_nested_config_loads() -> None:
    text = (HEAD + '[[virtual_server]]\nip = "10.0.0.1"\nport = 25\n'
            'real_server = [{ ip = "10.0.0.2", SMTP_CHECK = [{ connect_timeout = 2 }] }]\n')
    config = loads(text, SOURCE)
    assert config.virtual_servers[0].real_servers[0].checkers[0].common.connect_timeout == 2


@pytest.mark.parametrize(("text", "line"), [
    (HEAD + '[vrrp_instance.VI]\ninterface = "eth0', 4),  # unterminated string
    (HEAD + "[[virtual_server", 3),  # unterminated header
    (HEAD + 'x = """abc\n\n\n', 3),  # unterminated string, blank lines after
    (HEAD + "x = [1,\n 2,\n", 4),  # unterminated array
])
def test_syntax_errors_at_the_end_of_the_file_have_a_line(text: str, line: int) -> None:
    message = only_error(text)
    assert message.startswith(f"t.toml:{line}: error: (document): TOML syntax: "), message
    assert "at the end of the file" in message


@pytest.mark.parametrize(("text", "expected"), [
    # a table that exists only as the prefix of a header or of a dotted key
    (HEAD + '\n[vrrp_scrpt.chk]\nscript = "/bin/true"\n',
     't.toml:4: error: vrrp_scrpt: unknown key "vrrp_scrpt" in the top level'),
    ('\nx.y.z = 1\n' + HEAD, 't.toml:2: error: x: unknown key "x" in the top level'),
    # [[virtual_server]] became a plain key; its real_server header now implies the table
    (HEAD + '\n[[virtual_server.real_server]]\nip = "10.0.0.2"\n',
     "t.toml:4: error: virtual_server: virtual_server must be an array of tables, got a table"),
])
def test_structural_errors_on_implied_tables_have_a_line(text: str, expected: str) -> None:
    assert only_error(text).startswith(expected)
