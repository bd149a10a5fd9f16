"""mailha.importer.kaconf: keepalived.conf's line layer and block structure.

The expected results follow keepalived.conf(5) (its own examples are used where it has
them) and keepalived's lib/parser.c.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mailha.importer.kaconf import (
    Block,
    KeepalivedSyntaxError,
    QuoteError,
    Statement,
    decomment,
    parse,
    parse_text,
    split_braces,
    split_quoted,
    split_words,
)

DATA = Path(__file__).parent / "data" / "keepalived"


def lines(block: Block) -> list[str]:
    """Flatten a tree to "keyword args" lines with braces, for compact assertions."""
    out: list[str] = []

    def walk(nodes: Block, depth: int) -> None:
        for node in nodes:
            out.append("  " * depth + " ".join((node.keyword, *node.args)))
            if node.block is not None:
                walk(node.block, depth + 1)

    walk(block, 0)
    return out


def text(source: str, **kwargs: object) -> Block:
    return parse_text(textwrap.dedent(source), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lexing


def test_decomment_strips_hash_and_bang_comments_outside_double_quotes() -> None:
    assert decomment("  router_id r1   # the id") == "router_id r1"
    assert decomment("smtp_server 127.0.0.1 ! local relay") == "smtp_server 127.0.0.1"
    assert decomment('script "/bin/echo #1 !2"  # note') == 'script "/bin/echo #1 !2"'
    assert decomment("# whole line") == ""


def test_decomment_unescapes_comment_characters_and_keeps_trailing_backslash() -> None:
    assert decomment(r"auth_pass a\#b\!c") == "auth_pass a#b!c"
    assert decomment("$X= \\") == "$X=\\"
    assert decomment("  interface eth0   \\") == "interface eth0\\"


def test_split_braces_separates_braces_except_inside_double_quotes() -> None:
    assert split_braces("vrrp_instance VI_1 {") == ["vrrp_instance VI_1", "{"]
    assert split_braces("unicast_peer { 10.0.0.2 }") == ["unicast_peer", "{", "10.0.0.2", "}"]
    assert split_braces("} }") == ["}", "}"]
    assert split_braces('script "echo {a}"') == ['script "echo {a}"']


def test_split_words_groups_double_quotes_only() -> None:
    assert split_words('script "/bin/check --x 1" root') == ["script", "/bin/check --x 1", "root"]
    assert split_words("auth_pass it's") == ["auth_pass", "it's"]
    assert split_words('a"b c"') == ["a", "b c"]
    with pytest.raises(QuoteError):
        split_words('script "/bin/true')


def test_split_quoted_follows_the_manual_examples() -> None:
    # keepalived.conf(5), "Quoted strings"
    assert split_quoted("'abcd\" efg h jkl \"mnop'") == ['abcd" efg h jkl "mnop']
    assert split_quoted('abcd" efg h jkl "mnop') == ["abcd efg h jkl mnop"]
    assert split_quoted('abcd "efg h jkl" mnop') == ["abcd", "efg h jkl", "mnop"]


def test_split_quoted_decodes_every_escape_the_manual_lists() -> None:
    assert split_quoted(r'"\a\b\E\f\n\r\t\v"') == ["\a\b\x1b\f\n\r\t\v"]
    assert split_quoted(r'"\101\x42\cC"') == ["AB\x03"]
    assert split_quoted(r'"a\"b" c\\d \q') == ['a"b', "c\\d", "q"]
    with pytest.raises(QuoteError):
        split_quoted("'unterminated")
    with pytest.raises(QuoteError):
        split_quoted("trailing\\")


# --------------------------------------------------------------------------- blocks


def test_the_seed_config_parses_into_keyword_nodes_with_file_and_line() -> None:
    tree = parse(DATA / "seed-node1.conf")
    assert [node.keyword for node in tree] == ["vrrp_script", "vrrp_instance"]
    instance = tree.find("vrrp_instance")[0]
    assert instance.args == ("VI_postfix",)
    assert instance.block is not None
    peer = instance.block.find("unicast_peer")[0]
    assert [child.keyword for child in peer.children] == ["10.12.49.36"]
    assert peer.children[0].location.line == 17
    assert peer.children[0].location.file == DATA / "seed-node1.conf"
    assert str(instance.block.find("state")[0].location).endswith("seed-node1.conf:11")


def test_opening_brace_may_be_on_the_next_line_and_blocks_on_one_line() -> None:
    tree = text(
        """
        vrrp_instance VI_1
        {
            virtual_ipaddress { 10.0.0.1/24 10.0.0.2 }
            track_script
            {
                chk
            }
        }
        """
    )
    assert lines(tree) == [
        "vrrp_instance VI_1",
        "  virtual_ipaddress",
        "    10.0.0.1/24 10.0.0.2",
        "  track_script",
        "    chk",
    ]


def test_empty_block_differs_from_no_block() -> None:
    tree = text("track_script {\n}\nnopreempt\n")
    assert tree.nodes[0].block == Block((), tree.nodes[0].location)
    assert tree.nodes[1].block is None


def test_node_keeps_the_line_text_for_commands_that_use_quoting() -> None:
    node = text("""notify_master "/etc/n.sh 'a b'" root\n""").nodes[0]
    assert isinstance(node, Statement)
    assert node.args == ("/etc/n.sh 'a b'", "root")
    assert node.quoted_args() == ("/etc/n.sh 'a b'", "root")


# --------------------------------------------------------------------------- conditionals


CONDITIONAL = """
global_defs {
    @main   router_id main_router
    @backup router_id backup_router
}
vrrp_instance VRRP {
    @main    unicast_src_ip 1.2.3.4
    @backup  unicast_src_ip 1.2.3.5
    @backup2 unicast_src_ip 1.2.3.6
    unicast_peer {
        @^main    1.2.3.4
        @^backup  1.2.3.5
        @^backup2 1.2.3.6
    }
}
"""


def test_conditional_lines_follow_the_manual_for_main() -> None:
    tree = text(CONDITIONAL, config_id="main")
    assert lines(tree) == [
        "global_defs",
        "  router_id main_router",
        "vrrp_instance VRRP",
        "  unicast_src_ip 1.2.3.4",
        "  unicast_peer",
        "    1.2.3.5",
        "    1.2.3.6",
    ]
    assert tree.conditional_ids == {"main", "backup", "backup2"}


def test_conditional_lines_without_a_config_id_keep_only_negations() -> None:
    tree = text(CONDITIONAL)
    assert lines(tree) == [
        "global_defs",
        "vrrp_instance VRRP",
        "  unicast_peer",
        "    1.2.3.4",
        "    1.2.3.5",
        "    1.2.3.6",
    ]


def test_conditional_with_nothing_after_the_id_is_dropped() -> None:
    assert lines(text("@main\nnopreempt\n", config_id="main")) == ["nopreempt"]


# --------------------------------------------------------------------------- parameters


def test_parameters_are_replaced_at_use_time_as_in_the_manual() -> None:
    tree = text(
        """
        $ADDRESS_BASE=10.2.${ADDRESS_BASE_SUB}
        $ADDRESS_BASE_SUB=0
        ${ADDRESS_BASE}.100/32
        $ADDRESS_BASE_SUB=10
        ${ADDRESS_BASE}.100/32
        """
    )
    assert lines(tree) == ["10.2.0.100/32", "10.2.10.100/32"]


def test_parameters_combine_with_conditionals() -> None:
    source = """
        @main $PRIORITY=240
        @backup $PRIORITY=200
        vrrp_instance VI_0 {
            priority $PRIORITY
        }
        $IF_MAIN=@main
        $IF_MAIN nopreempt
    """
    assert lines(text(source, config_id="main")) == [
        "vrrp_instance VI_0",
        "  priority 240",
        "nopreempt",
    ]
    assert lines(text(source, config_id="backup")) == ["vrrp_instance VI_0", "  priority 200"]


def test_multiline_parameter_expands_each_time_with_current_values() -> None:
    tree = text(
        """
        $INSTANCE= \\
        vrrp_instance VI_${NUM} { \\
            interface eth0.${NUM} \\
            @high priority 130 \\
            @low priority 120 \\
            virtual_ipaddress { \\
                10.0.${NUM}.254/24 \\
            } \\
        }

        $NUM=0
        $INSTANCE
        $NUM=1
        $INSTANCE
        """,
        config_id="low",
    )
    assert lines(tree) == [
        "vrrp_instance VI_0",
        "  interface eth0.0",
        "  priority 120",
        "  virtual_ipaddress",
        "    10.0.0.254/24",
        "vrrp_instance VI_1",
        "  interface eth0.1",
        "  priority 120",
        "  virtual_ipaddress",
        "    10.0.1.254/24",
    ]
    assert tree.nodes[1].children[0].location.line == 15  # the line that used $INSTANCE


def test_nested_multiline_parameters_and_definitions_inside_them() -> None:
    tree = text(
        """
        $RS= \\
        real_server 192.168.${VS_NUM}.${RS_NUM} 25 { \\
            weight ${RS_NUM} \\
        }
        $VS= \\
        virtual_server 10.0.${VS_NUM}.4 25 { \\
            $RS_NUM=1 \\
            $RS \\
            $RS_NUM=2 \\
            $RS \\
        }
        $VS_NUM=7
        $VS
        """
    )
    assert lines(tree) == [
        "virtual_server 10.0.7.4 25",
        "  real_server 192.168.7.1 25",
        "    weight 1",
        "  real_server 192.168.7.2 25",
        "    weight 2",
    ]


def test_conditional_multiline_definition_for_another_node_is_skipped_whole() -> None:
    tree = text(
        """
        @backup $X= \\
        bogus line one \\
        bogus line two
        nopreempt
        """,
        config_id="main",
    )
    assert lines(tree) == ["nopreempt"]


def test_predefined_parameters() -> None:
    tree = parse_text(
        'a ${_PWD} ${_INSTANCE} "${_HASH}${_BANG}"\n', name=DATA / "x.conf", config_id="n1"
    )
    assert tree.nodes[0].args == (str(DATA.resolve()), "n1", "#!")


def test_undefined_parameter_inside_quotes_is_left_for_the_script() -> None:
    tree = text('notify "/bin/echo $HOME ${USER}"\n')
    assert tree.nodes[0].args == ("/bin/echo $HOME ${USER}",)


def test_defines_argument_presets_parameters() -> None:
    assert lines(text("priority $P\n", defines={"P": "150"})) == ["priority 150"]


def test_sequence_and_list_blocks() -> None:
    tree = text(
        """
        ~SEQ(SUBNET, 0, 3) ip_address 10.0.${SUBNET}.1
        ~SEQx(N, 0x90, 0x10, 0xc0) fe80::20:${N}:1
        ~LST({IP, IP1}, {10,1},{20,4}) ~SEQ(IP2,168,2,170) 192.${IP2}.${IP}.${IP1}
        ~SEQ(C, 2) n${C}
        """
    )
    assert lines(tree) == [
        *(f"ip_address 10.0.{n}.1" for n in range(4)),
        *(f"fe80::20:{n}:1" for n in ("90", "a0", "b0", "c0")),
        "192.168.10.1",
        "192.170.10.1",
        "192.168.20.4",
        "192.170.20.4",
        "n1",
        "n2",
    ]


# --------------------------------------------------------------------------- include


def test_include_with_a_relative_glob_reads_files_in_order() -> None:
    tree = parse(DATA / "include" / "keepalived.conf")
    assert [node.keyword for node in tree] == ["global_defs", "vrrp_script", "vrrp_instance"]
    instance = tree.find("vrrp_instance")[0]
    vips = instance.block.find("virtual_ipaddress")[0] if instance.block else None
    assert vips is not None
    assert vips.location.file.name == "vips.inc"  # found relative to 20-instance.conf
    assert vips.children[0].keyword == "192.0.2.7/24"
    assert [note.keyword for note in tree.notes] == ["include"]
    assert "optional/*.conf" in tree.notes[0].message
    assert tree.notes[0].location.line == 6


def test_brace_expansion_in_include(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("router_a\n")
    (tmp_path / "b.conf").write_text("router_b\n")
    (tmp_path / "main.conf").write_text("includea {b,a}.conf\n")
    assert lines(parse(tmp_path / "main.conf")) == ["router_b", "router_a"]


def test_include_reads_into_the_current_block(tmp_path: Path) -> None:
    (tmp_path / "peers.inc").write_text("10.0.0.2\n10.0.0.3\n")
    (tmp_path / "main.conf").write_text("unicast_peer {\n include peers.inc\n}\n")
    assert lines(parse(tmp_path / "main.conf")) == ["unicast_peer", "  10.0.0.2", "  10.0.0.3"]


@pytest.mark.parametrize(
    ("keyword", "fails"),
    [("include", False), ("includer", False), ("includem", True), ("includea", True)],
)
def test_missing_include_file(tmp_path: Path, keyword: str, fails: bool) -> None:
    (tmp_path / "main.conf").write_text(f"nopreempt\n{keyword} nothere.conf\n")
    if fails:
        with pytest.raises(KeepalivedSyntaxError) as err:
            parse(tmp_path / "main.conf")
        assert err.value.line == 2
        assert "nothere.conf does not exist" in err.value.reason
    else:
        tree = parse(tmp_path / "main.conf")
        assert lines(tree) == ["nopreempt"]
        assert tree.notes[0].location.line == 2


def test_wildcard_matching_nothing_fails_only_with_wildcard_checks(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("includew conf.d/*.conf\n")
    with pytest.raises(KeepalivedSyntaxError, match="matches no file"):
        parse(tmp_path / "main.conf")
    (tmp_path / "main.conf").write_text("includem conf.d/*.conf\n")
    assert len(parse(tmp_path / "main.conf").notes) == 1


def test_brace_alternative_matching_nothing_fails_with_includeb(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("x\n")
    (tmp_path / "main.conf").write_text("includeb {a,b}.conf\n")
    with pytest.raises(KeepalivedSyntaxError, match=r"alternative 'b\.conf'"):
        parse(tmp_path / "main.conf")


def test_unreadable_include_fails_only_with_includer(tmp_path: Path) -> None:
    (tmp_path / "dangling.conf").symlink_to(tmp_path / "gone.conf")
    (tmp_path / "main.conf").write_text("includer dangling.conf\n")
    with pytest.raises(KeepalivedSyntaxError, match="cannot read"):
        parse(tmp_path / "main.conf")
    (tmp_path / "main.conf").write_text("include dangling.conf\n")
    assert "not readable" in parse(tmp_path / "main.conf").notes[0].message


def test_executable_include_is_skipped_as_keepalived_does(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    script = tmp_path / "conf.d" / "tool.conf"
    script.write_text("nopreempt\n")
    script.chmod(0o755)
    (tmp_path / "main.conf").write_text("include conf.d/*.conf\n")
    tree = parse(tmp_path / "main.conf")
    assert len(tree) == 0
    assert "executable" in tree.notes[0].message


# --------------------------------------------------------------------------- errors


def error_of(tmp_path: Path, source: str) -> KeepalivedSyntaxError:
    path = tmp_path / "keepalived.conf"
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    with pytest.raises(KeepalivedSyntaxError) as err:
        parse(path)
    assert str(err.value) == f"{err.value.file}:{err.value.line}: {err.value.reason}"
    return err.value


def test_missing_closing_brace_points_at_the_unclosed_block(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        """
        vrrp_instance VI_1 {
            virtual_ipaddress {
                10.0.0.1
            track_script {
                chk
            }
        }
        """,
    )
    assert err.file == tmp_path / "keepalived.conf"
    assert err.line == 2
    assert err.reason.startswith("the block of 'virtual_ipaddress' opened here looks unclosed")
    assert "(line 7)" in err.reason and "1 '}' missing" in err.reason


def test_missing_closing_brace_without_indentation_names_the_innermost_open_block(
    tmp_path: Path,
) -> None:
    err = error_of(tmp_path, "global_defs {\nrouter_id a\n}\nvrrp_instance VI_1 {\nstate MASTER\n")
    assert err.line == 4
    assert "'vrrp_instance' opened here is never closed" in err.reason


def test_extra_closing_brace(tmp_path: Path) -> None:
    err = error_of(tmp_path, "global_defs {\n  router_id a\n}\n}\n")
    assert (err.line, err.reason) == (4, "'}' without a matching '{'")


def test_opening_brace_without_a_keyword(tmp_path: Path) -> None:
    err = error_of(tmp_path, "{\n  router_id a\n}\n")
    assert err.line == 1
    assert "without a keyword" in err.reason


def test_unterminated_quote(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'vrrp_script chk {\n  script "/bin/true\n}\n')
    assert err.line == 2
    assert "unterminated double quote" in err.reason


def test_unknown_parameter_outside_quotes(tmp_path: Path) -> None:
    err = error_of(tmp_path, "vrrp_instance VI_1 {\n  priority $PRIORITY\n}\n")
    assert err.line == 2
    assert "unknown parameter $PRIORITY" in err.reason


def test_defined_parameter_glued_to_text_says_to_use_braces(tmp_path: Path) -> None:
    err = error_of(tmp_path, "$NET=10.0.0\n$NET.1\n")
    assert err.line == 2
    assert "write ${NET}" in err.reason


def test_self_referencing_parameter_is_an_error_not_a_hang(tmp_path: Path) -> None:
    err = error_of(tmp_path, "$A=x $A\n$A\n")
    assert err.line == 2
    assert "nests too deeply" in err.reason


def test_random_parameter_is_refused_because_output_must_be_fixed(tmp_path: Path) -> None:
    err = error_of(tmp_path, "priority ${_RANDOM 1 100}\n")
    assert "_RANDOM" in err.reason


def test_include_loop(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("nopreempt\ninclude keepalived.conf\n")
    err = error_of(tmp_path, "include a.conf\n")
    assert err.file == tmp_path / "a.conf"
    assert err.line == 2
    assert err.reason == "include loop: keepalived.conf -> a.conf -> keepalived.conf"


def test_invalid_sequence(tmp_path: Path) -> None:
    err = error_of(tmp_path, "~SEQ(N, 1, -1, 5) x\n")
    assert "step never reaches the end" in err.reason


def test_missing_main_file(tmp_path: Path) -> None:
    with pytest.raises(KeepalivedSyntaxError, match="cannot read") as err:
        parse(tmp_path / "absent.conf")
    assert err.value.line == 0


def test_undecodable_bytes_do_not_crash(tmp_path: Path) -> None:
    path = tmp_path / "k.conf"
    path.write_bytes(b"router_id \xff\xfe\n")
    assert parse(path).nodes[0].args == ("\ufffd\ufffd",)
