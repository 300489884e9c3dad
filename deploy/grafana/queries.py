"""The PromQL of the tastegraph dashboards: list every panel's expression and the metric names used.

    python deploy/grafana/queries.py           # one line per expression: dashboard, panel, PromQL
    python deploy/grafana/queries.py --names   # the metric names the dashboards use
    python deploy/grafana/queries.py --rules   # a rules file for `promtool check rules`

Grafana's own variables ($__rate_interval, $__interval, $__range) are replaced by fixed durations so
that the expressions can be sent to Prometheus' HTTP API as they are. Standard library only: the
tests load this file by path.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"

#: what Grafana would put in for its built-in variables
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "atan2", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # the dashboard's uid
    panel: str  # the panel's title
    ref_id: str
    expr: str  # as written in the dashboard

    @property
    def promql(self) -> str:
        """The expression with Grafana's variables replaced, ready for Prometheus."""
        return substitute(self.expr)


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    out = expr
    for name, value in sorted((variables or GRAFANA_VARIABLES).items(), key=lambda kv: -len(kv[0])):
        out = out.replace("${" + name[1:] + "}", value).replace(name, value)
    return out


def dashboard_files(folder: Path = DASHBOARDS) -> list[Path]:
    return sorted(folder.glob("*.json"))


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # panels inside collapsed rows


def panel_queries(folder: Path = DASHBOARDS) -> list[PanelQuery]:
    """Every PromQL target of every panel of every dashboard in ``folder``."""
    out = []
    for path in dashboard_files(folder):
        board = json.loads(path.read_text())
        for panel in _panels(board.get("panels") or []):
            for target in panel.get("targets") or []:
                expr = (target.get("expr") or "").strip()
                if expr and not target.get("hide"):
                    out.append(
                        PanelQuery(board["uid"], panel.get("title", ""), target["refId"], expr)
                    )
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (function names, keywords and label names excluded)."""
    text = _STRING.sub('""', substitute(expr))
    # metric names written as {__name__="..."} are not supported (the dashboards do not use them)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def all_metric_names(folder: Path = DASHBOARDS) -> set[str]:
    return set().union(*(metric_names(q.expr) for q in panel_queries(folder)))


def rules_file(folder: Path = DASHBOARDS) -> str:
    """A Prometheus recording-rules file with one rule per expression (JSON is valid YAML)."""
    rules = [
        {"record": f"tastegraph_dashboard:q{i}", "expr": q.promql}
        for i, q in enumerate(panel_queries(folder))
    ]
    return json.dumps({"groups": [{"name": "tastegraph-dashboards", "rules": rules}]}, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=DASHBOARDS, help="dashboards folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--names", action="store_true", help="print the metric names used")
    group.add_argument("--rules", action="store_true", help="print a Prometheus rules file")
    args = parser.parse_args(argv)
    if args.names:
        print("\n".join(sorted(all_metric_names(args.dir))))
    elif args.rules:
        print(rules_file(args.dir))
    else:
        for q in panel_queries(args.dir):
            print(f"{q.dashboard}\t{q.panel}\t{q.promql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
