"""The import rule: each package imports only the packages below it, so the folder list reads as
the architecture and no library module reaches up into the CLI.

Every import is checked, including those inside functions and ``importlib.import_module("...")``
with a constant name; ``if TYPE_CHECKING:`` imports count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "encoder": set(),
    "graph": set(),
    "finetuning": {"config", "encoder", "graph"},
    "stream": {"config", "encoder", "graph", "finetuning"},
    "evaluation": {"config", "encoder", "graph"},
    "services": {"config"},
    "tools": {"config", "graph", "stream"},
    "cli": {
        "config",
        "encoder",
        "graph",
        "finetuning",
        "stream",
        "evaluation",
        "services",
        "tools",
    },
}
PACKAGES = tuple(ALLOWED)

# third-party modules a package must not import at all (the pure cores stay apart from adapters)
KAFKA = {"faust", "mode", "aiokafka", "kafka"}
FORBIDDEN: dict[str, set[str]] = {
    "config": KAFKA | {"neo4j", "torch", "transformers"},
    "encoder": KAFKA | {"neo4j"},
    "graph": KAFKA | {"neo4j", "torch", "transformers"},
}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``."""
    package = path.relative_to(ROOT).parts[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            # a relative import stays inside its own package
            yield node.lineno, package if node.level else (node.module or "")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_top_level_package_has_a_rule() -> None:
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert found == set(PACKAGES), "a new top-level package needs its line in ALLOWED"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    sources = _sources(package)
    assert sources, f"{package}/ holds no Python files"
    problems = []
    for path in sources:
        rel = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                problems.append(f"{rel}:{line}: imports {module}")
            if top in FORBIDDEN.get(package, set()):
                problems.append(f"{rel}:{line}: imports {module}")
    assert not problems, f"{package}/ may import only {sorted(ALLOWED[package])}:\n" + "\n".join(
        problems
    )


def test_the_scan_sees_imports_inside_functions() -> None:
    """cli/main.py imports its settings inside ``main``; the scan must see it."""
    modules = {m for _, m in _imports(ROOT / "cli" / "main.py")}
    assert "config.settings" in modules


def test_graph_package_imports_no_kafka_and_no_torch() -> None:
    """At run time too: importing every graph module loads no Kafka client, torch or driver."""
    code = (
        "import sys, graph.store, graph.reads, graph.dump, graph.queries, graph.decay, graph.fold;"
        "print(sorted(m for m in ('torch', 'faust', 'aiokafka', 'kafka', 'transformers', 'neo4j')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
