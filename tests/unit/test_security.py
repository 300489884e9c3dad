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
QUERY_METHODS = {"run", "execute_query"}
# `.run(` calls that are not Cypher: processes, event loops, command modules
NOT_CYPHER_OWNERS = {"subprocess", "asyncio", "module", "command"}
# the home of Cypher: every module of the package (its constants are re-exported by the package)
QUERIES_HOME = "graph/queries/"
# literal Cypher outside graph/queries/, where the importing rule keeps graph out: the local
# services' readiness probe (services may import only config)
LITERAL_ALLOWED = {("services/neo4j.py", "RETURN 1 AS ok")}


def _cypher_calls(tree: ast.AST) -> list[tuple[ast.Call, ast.expr]]:
    """``(call, query argument)`` of every ``x.run(...)``/``x.execute_query(...)`` call."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in QUERY_METHODS or not node.args:
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id in NOT_CYPHER_OWNERS:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and first.value is None:
            continue  # onnxruntime's InferenceSession.run(None, feeds)
        calls.append((node, first))
    return calls


def _query_constants() -> set[str]:
    """The names in the graph.queries package's namespace whose values are query texts (or tuples
    of them): whatever a module of graph/queries/ defines, the package re-exports."""
    from graph import queries

    return {
        name
        for name, value in vars(queries).items()
        if name.isupper()
        and (
            isinstance(value, str)
            or (isinstance(value, tuple) and all(isinstance(v, str) for v in value))
        )
    }


class _QueryResolver:
    """Decides whether an expression can only be a constant of graph/queries/: ``q.NAME``, a
    name imported from graph.queries (or one of its modules), a loop variable over such a tuple,
    a subscript of a module-level dict/tuple of them, a local assigned only such values, or a
    parameter that every call of its function in the module passes such a value."""

    def __init__(self, tree: ast.Module, constants: set[str]) -> None:
        self.tree = tree
        self.constants = constants
        self.aliases: set[str] = set()  # names bound to the graph.queries module
        self.imported: set[str] = set()  # constants imported by name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "graph":
                self.aliases |= {a.asname or a.name for a in node.names if a.name == "queries"}
            elif isinstance(node, ast.ImportFrom) and _is_queries_module(node.module):
                self.imported |= {a.asname or a.name for a in node.names if a.name in constants}
            elif isinstance(node, ast.Import):
                self.aliases |= {
                    a.asname for a in node.names if a.name == "graph.queries" and a.asname
                }
        self.parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        self.module_values = {
            t.id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }

    def _function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    def resolves(self, expr: ast.expr, seen: frozenset[int] = frozenset()) -> bool:
        if id(expr) in seen:
            return False
        seen = seen | {id(expr)}
        if isinstance(expr, ast.Attribute):
            return (
                isinstance(expr.value, ast.Name)
                and expr.value.id in self.aliases
                and expr.attr in self.constants
            )
        if isinstance(expr, ast.IfExp):
            return self.resolves(expr.body, seen) and self.resolves(expr.orelse, seen)
        if isinstance(expr, ast.Subscript):
            container = expr.value
            if isinstance(container, ast.Name) and container.id in self.module_values:
                value = self.module_values[container.id]
                if isinstance(value, ast.Dict):
                    return all(self.resolves(v, seen) for v in value.values)
                if isinstance(value, ast.Tuple | ast.List):
                    return all(self.resolves(v, seen) for v in value.elts)
            return self.resolves(container, seen)  # an element of a tuple constant
        if isinstance(expr, ast.Name):
            return self._name_resolves(expr, seen)
        return False

    def _name_resolves(self, name: ast.Name, seen: frozenset[int]) -> bool:
        if name.id in self.imported:
            return True
        function = self._function_of(name)
        if function is None:
            value = self.module_values.get(name.id)
            return value is not None and self.resolves(value, seen)
        # a loop variable or local assignments: every binding must resolve
        bindings: list[ast.expr] = []
        for node in ast.walk(function):
            if isinstance(node, ast.For | ast.comprehension) and _binds(node.target, name.id):
                if isinstance(node.iter, ast.Tuple | ast.List):  # for x in (a, *b): ...
                    bindings += [
                        e.value if isinstance(e, ast.Starred) else e for e in node.iter.elts
                    ]
                else:  # an element of a tuple constant
                    bindings.append(node.iter)
            elif isinstance(node, ast.Assign) and any(_binds(t, name.id) for t in node.targets):
                bindings.append(node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr) and _binds(
                node.target, name.id
            ):
                bindings.append(node.value or ast.Constant(None))
        if bindings:
            return all(self.resolves(b, seen) for b in bindings)
        params = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
        if name.id not in params:
            return False
        return self._every_caller_passes_a_constant(function, params.index(name.id), seen)

    def _every_caller_passes_a_constant(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, index: int, seen: frozenset[int]
    ) -> bool:
        method = bool(function.args.args) and function.args.args[0].arg in {"self", "cls"}
        passed: list[ast.expr] = []
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            called = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", None)
            if called == function.name:
                at = index - 1 if method else index
                if at < len(node.args):
                    passed.append(node.args[at])
                else:
                    passed.extend(
                        k.value for k in node.keywords if k.arg == function.args.args[index].arg
                    )
            # handed to a managed transaction: execute_write(fn, *args) calls fn(tx, *args)
            for position, arg in enumerate(node.args):
                if isinstance(arg, ast.Name | ast.Attribute) and _callee_name(arg) == function.name:
                    at = position + index - (1 if method else 0)
                    if index > 0 and at < len(node.args):
                        passed.append(node.args[at])
        return bool(passed) and all(self.resolves(p, seen) for p in passed)


def _is_queries_module(module: str | None) -> bool:
    """``graph.queries`` or one of its modules (``graph.queries.refresh``)."""
    return module is not None and (module == "graph.queries" or module.startswith("graph.queries."))


def _binds(target: ast.expr, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target))


def _callee_name(expr: ast.expr) -> str | None:
    return expr.id if isinstance(expr, ast.Name) else getattr(expr, "attr", None)


def _unresolved_queries(path: Path, rel: str, constants: set[str]) -> tuple[int, list[str]]:
    tree = ast.parse(path.read_text(), str(path))
    resolver = _QueryResolver(tree, constants)
    checked, problems = 0, []
    for call, query in _cypher_calls(tree):
        checked += 1
        if isinstance(query, ast.Constant) and (rel, query.value) in LITERAL_ALLOWED:
            continue
        if not resolver.resolves(query):
            problems.append(f"{rel}:{call.lineno}: {ast.unparse(query)[:80]}")
    return checked, problems


def test_every_query_reaching_the_driver_is_a_constant_of_graph_queries() -> None:
    """Not only the text written inside ``.run(...)``: whatever reaches the driver (through a
    variable, a parameter, a helper) must be a constant of graph/queries/; values travel as
    parameters (``$name``)."""
    constants = _query_constants()
    checked = 0
    problems = []
    for package in CYPHER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(QUERIES_HOME):
                continue
            n, found = _unresolved_queries(path, rel, constants)
            checked += n
            problems += found
    assert checked >= 20, "the scan found few Cypher calls: has the code moved?"
    assert not problems, "queries that are not constants of graph/queries/:\n" + "\n".join(problems)


BAD = """
from graph import queries as q
from graph.queries.operations import FORGET_LOCKS

def lookup(tx, user_id):
    query = f"MATCH (u:User) WHERE u.user_id = '{user_id}' RETURN u"
    return tx.run(query)

def helper(tx, text):
    return tx.run(text)

def through_a_helper(tx, user_id):
    return helper(tx, "MATCH (u {id: '" + user_id + "'}) RETURN u")

def good(tx, user_id):
    return tx.run(q.FORGET_USER, user_id=user_id)

def good_from_a_module(tx, user_id):
    return tx.run(FORGET_LOCKS, user_id=user_id)
"""


def test_the_guard_catches_a_query_built_before_the_call(tmp_path: Path) -> None:
    """The pattern the old check let through: the f-string is built on the line before."""
    path = tmp_path / "bad.py"
    path.write_text(BAD)
    checked, problems = _unresolved_queries(path, "bad.py", _query_constants())
    assert checked == 4
    assert [p.split(": ", 1)[1] for p in problems] == ["query", "text"]


def test_the_package_re_exports_every_query_of_its_modules() -> None:
    """``q.NAME`` reaches every constant of every module of graph/queries/, with the same value."""
    import importlib

    from graph import queries

    modules = sorted(p.stem for p in (ROOT / QUERIES_HOME).glob("*.py") if p.stem != "__init__")
    assert len(modules) >= 5
    for name in modules:
        module = importlib.import_module(f"graph.queries.{name}")
        for constant, value in vars(module).items():
            if constant.isupper() and not constant.startswith("_"):
                assert getattr(queries, constant, None) is value, f"{name}.{constant}"


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
