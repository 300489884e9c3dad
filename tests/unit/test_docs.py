"""The README is the door (short, true, linked into docs/); docs/ is navigable from its index."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(page.read_text()) if "://" not in m.group(1)]


def test_readme_is_a_door_of_at_most_250_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in pages
        for target in _links(page)
        if not (page.parent / target).exists()
    ]
    assert not broken, broken


def test_docs_index_is_current_and_lists_every_page() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/build-docs-index.py", "--check"], cwd=ROOT, capture_output=True
    )
    assert check.returncode == 0, (
        f"docs/index.md is stale: run {sys.executable} scripts/build-docs-index.py"
    )
    index = (ROOT / "docs" / "index.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True).returncode == 0


def test_every_tastegraph_command_in_the_readme_exists() -> None:
    blocks = re.findall(r"^```\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    used = {m for block in blocks for m in re.findall(r"^\s*tastegraph ([a-z-]+)", block, re.M)}
    assert used, "the tour runs no tastegraph command"
    assert used <= set(COMMANDS), used - set(COMMANDS)
