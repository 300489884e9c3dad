"""Security without the services (issue 7.7): Cypher only with parameters, loopback by default,
the password only from the environment or a secrets file and never in what a command prints.

The same properties on the real services (worker logs, injection payloads stored as data, listening
sockets) are checked in tests/integration/test_reliability.py.
"""

from __future__ import annotations

import ast
import io
import socket
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "n0t-in-any-0utput-Xq7"
# every package (graph, stream, evaluation, tools and cli talk to Neo4j); benchmarks build labels
# from their own constants
CYPHER_PACKAGES = (
    "config",
    "encoder",
    "graph",
    "finetuning",
    "stream",
    "evaluation",
    "services",
    "tools",
    "cli",
)
NOT_CHECKED = {"tools/pipeline_bench.py"}
QUERY_METHODS = {"run", "execute_query"}


def _cypher_calls(path: Path) -> list[tuple[int, ast.expr]]:
    """``(line, query argument)`` of every ``x.run(...)``/``x.execute_query(...)`` call."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in QUERY_METHODS or not node.args:
            continue
        owner = node.func.value
        # subprocess.run / asyncio.run / loop.run_* are not Cypher
        if isinstance(owner, ast.Name) and owner.id in {"subprocess", "asyncio"}:
            continue
        calls.append((node.lineno, node.args[0]))
    return calls


def _is_built(expr: ast.expr) -> bool:
    """True when the query text is assembled at run time (f-string, +, %, .format, join)."""
    for node in ast.walk(expr):
        if isinstance(node, ast.JoinedStr):
            return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"format", "join", "replace"}
        ):
            return True
    return False


def test_cypher_is_never_assembled_from_data() -> None:
    """Every query is a constant string; values travel as parameters (``$name``)."""
    checked = 0
    problems = []
    for package in CYPHER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in NOT_CHECKED:
                continue
            for line, query in _cypher_calls(path):
                checked += 1
                if _is_built(query):
                    problems.append(f"{rel}:{line}: {ast.unparse(query)[:80]}")
    assert checked >= 5, "the scan found no Cypher calls: has the code moved?"
    assert not problems, "queries built from strings at run time:\n" + "\n".join(problems)


def test_the_query_constants_are_plain_strings() -> None:
    from graph import queries

    constants = {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str) and "MATCH" in value.upper()
    }
    assert len(constants) >= 5
    for name, text in constants.items():
        # no Python formatting placeholders that someone could fill with data later
        assert "{}" not in text and "%s" not in text, name


def test_the_metrics_port_binds_loopback_by_default() -> None:
    from stream.metrics import Metrics, start_metrics_server

    settings = Settings()
    assert settings.metrics_host == "127.0.0.1"
    server = start_metrics_server(Metrics.create(), settings.metrics_host, 0)
    try:
        bound = server._server.socket.getsockname()  # the real socket
        assert bound[0] == "127.0.0.1"
        # and it is not reachable on another address of this machine
        others = {
            info[4][0]
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            if not info[4][0].startswith("127.")
        }
        for address in others:
            with pytest.raises(OSError), socket.create_connection((address, server.port), 1):
                pass
    finally:
        server.close()


def test_the_local_servers_listen_on_loopback_only(tmp_path: Path) -> None:
    from services.kafka import KafkaService
    from services.neo4j import Neo4jService

    settings = Settings(home=tmp_path)
    conf = Neo4jService(settings).render_conf()
    assert "server.default_listen_address=127.0.0.1" in conf
    assert "server.http.enabled=false" in conf and "server.https.enabled=false" in conf
    props = KafkaService(settings).render_properties()
    listeners = [line for line in props.splitlines() if line.startswith("listeners=")]
    assert listeners and all("0.0.0.0" not in line for line in listeners)
    assert "127.0.0.1" in listeners[0]


def test_no_default_password_anywhere(tmp_path: Path) -> None:
    """Without NEO4J_PASSWORD, NEO4J_PASSWORD_FILE or the local services' file: no password."""
    settings = Settings.from_env({"TASTEGRAPH_HOME": str(tmp_path)})
    assert settings.neo4j_password.get_secret_value() == ""
    from_file = tmp_path / "secret"
    from_file.write_text(PASSWORD + "\n")
    settings = Settings.from_env(
        {"TASTEGRAPH_HOME": str(tmp_path), "NEO4J_PASSWORD_FILE": str(from_file)}
    )
    assert settings.neo4j_password.get_secret_value() == PASSWORD


@pytest.mark.parametrize("as_json", [False, True])
def test_config_never_prints_the_password(tmp_path: Path, as_json: bool) -> None:
    import argparse

    from cli import config

    settings = Settings.from_env({"TASTEGRAPH_HOME": str(tmp_path), "NEO4J_PASSWORD": PASSWORD})
    out = io.StringIO()
    with redirect_stdout(out):
        assert config.run(argparse.Namespace(json=as_json, changed=False), settings) == 0
    text = out.getvalue()
    assert "NEO4J_PASSWORD" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)


def test_the_worker_logs_only_masked_settings() -> None:
    """The worker's start-up line names addresses, never the password field."""
    source = (ROOT / "cli" / "worker.py").read_text()
    assert "neo4j_password" not in source
    runtime = (ROOT / "stream" / "runtime.py").read_text()
    # the password leaves Settings only towards the driver's auth tuple
    uses = [line for line in runtime.splitlines() if "get_secret_value" in line]
    assert len(uses) == 1 and "auth=" in uses[0]
