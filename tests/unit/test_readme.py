"""README.md is assembled from docs/readme/*.md; a stale README fails here."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_is_assembled_from_its_sections(tmp_path: Path) -> None:
    before = (ROOT / "README.md").read_text()
    parts = sorted((ROOT / "docs" / "readme").glob("[0-9][0-9]-*.md"))
    assert parts, "no README sections"
    for part in parts:
        assert part.read_text().strip() in before, (
            f"README.md is stale: run {sys.executable} scripts/build-readme.py ({part.name})"
        )


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True).returncode == 0
