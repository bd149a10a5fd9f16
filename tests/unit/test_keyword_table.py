"""deploy/README.md's keepalived keyword table is what scripts/gen-keyword-table makes of
the importer's tables, so it cannot drift from what `mailha import-keepalived` does."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mailha.config import keys as L

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen-keyword-table"
README = REPO / "deploy" / "README.md"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gen_keyword_table", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gen_keyword_table", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_committed_table_is_the_generated_one() -> None:
    generated = _run()
    assert generated.returncode == 0, generated.stderr
    text = README.read_text()
    begin = text.index("<!-- BEGIN keyword table")
    committed = text[text.index("\n", begin) + 1:text.index("<!-- END keyword table -->")]
    assert committed.strip("\n") == generated.stdout.strip("\n"), (
        "deploy/README.md's keyword table is stale: run scripts/gen-keyword-table --write")
    assert _run("--check").returncode == 0


def test_check_catches_an_edited_table_and_write_repairs_it(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    edited = README.read_text().replace("| `lb_algo` | `lvs_sched` |", "| `lb_algo` | `algo` |", 1)
    assert edited != README.read_text()
    copy.write_text(edited)
    stale = _run("--check", "--readme", str(copy))
    assert stale.returncode == 1
    assert "-| `lb_algo` | `algo` |" in stale.stdout and "--write" in stale.stdout
    assert _run("--write", "--readme", str(copy)).returncode == 0
    assert copy.read_text() == README.read_text()


def test_table_names_every_keyword_of_the_importer(gen: ModuleType) -> None:
    table = gen.generate()
    for _, _, handlers, reasons, _ in gen.SECTIONS:
        for keyword in [*handlers, *reasons]:
            assert f"`{keyword}`" in table, keyword
    # The limits coded inside handlers, with the importer's own words.
    assert "IPsec AH authentication is not supported" in table
    assert "`vrrp_sync_group` | sync groups are not supported" in table
    assert "mailha sends no e-mail" in table


_SECTION_KEYS = {
    "`global_defs`": set(L.GLOBAL_SPEC) | {"lvs_timeouts", "lvs_sync_daemon"},
    "`vrrp_script NAME`": set(L.SCRIPT_SPEC) | {"script", "user", "group", "reverse"},
    "`vrrp_instance NAME`": set(L.INSTANCE_KEYS),
    "`virtual_server`": set(L.VS_KEYS),
    "`real_server`": set(L.RS_KEYS),
    "`SMTP_CHECK`": set(L.CHECKER_SPEC) | {"helo_name"},
    "`TCP_CHECK`": set(L.CHECKER_SPEC),
    "`MISC_CHECK`": set(L.CHECKER_SPEC) | set(L.MISC_KEYS),
}


def test_every_mailha_key_in_the_table_is_one_the_loader_reads(gen: ModuleType) -> None:
    """The keys a row names (before any inline-table fields) exist in that section."""
    checked = 0
    for heading, _, handlers, _, _ in gen.SECTIONS:
        if heading not in _SECTION_KEYS:
            continue
        for keyword, handler in handlers.items():
            target = gen.describe(handler)
            head = target.split("{")[0].split("(")[0]
            for key in re.findall(r"`([a-z_0-9]+)", head):
                known = _SECTION_KEYS[heading]
                if "of every `vrrp_instance`" in target:
                    known = set(L.INSTANCE_KEYS)
                if key.startswith("[") or key == "vrrp_instance":
                    continue
                assert key in known, f"{heading} {keyword}: {key}"
                checked += 1
    assert checked > 150
