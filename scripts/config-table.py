#!/usr/bin/env python3
"""Regenerates, from config/settings.py, the configuration table of docs/configuration.md
and the list of settings that docker-compose.yml passes through to the worker containers.

Variables, groups and defaults come from `Settings`; the descriptions are kept from the current
table (the only part a person edits). A new setting gets a row whose description says TODO, and a
`VAR: ${VAR:-}` line in compose (an empty value means the default), unless compose sets it itself.

    python scripts/config-table.py          # rewrite the table in place
    python scripts/config-table.py --check  # exit 1: the table is stale or lacks a description
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import ENV, Settings, default_home  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_BEGIN = "  # BEGIN SETTINGS (scripts/config-table.py: every other setting, passed through)"
COMPOSE_END = "  # END SETTINGS"
# set by docker-compose.yml itself (connections with the stack's defaults, paths and ports fixed in
# the containers, the device per service), or meaningful only for `tastegraph services`
COMPOSE_OWN = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "NEO4J_URI",
    "NEO4J_USER",
    "NEO4J_PASSWORD",
    "NEO4J_PASSWORD_FILE",
    # secrets never travel as plain compose variables: mount them and set *_FILE (see the docs)
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD",
    "NEO4J_DATABASE",
    "TASTEGRAPH_APP_ID",
    "TASTEGRAPH_HOME",
    "TASTEGRAPH_LOCAL_KAFKA_PORT",
    "TASTEGRAPH_LOCAL_NEO4J_PORT",
    "TASTEGRAPH_DEVICE",
    "TASTEGRAPH_METRICS_HOST",
    "TASTEGRAPH_METRICS_PORT",
}
BEGIN = "<!-- BEGIN CONFIG TABLE (scripts/config-table.py; edit the Meaning column only) -->"
END = "<!-- END CONFIG TABLE -->"
TODO = "TODO: describe"
# read by Settings.from_env without being a field of its own: (variable, after, default)
EXTRA = [
    ("NEO4J_PASSWORD_FILE", "NEO4J_PASSWORD", ""),
    ("KAFKA_SASL_PASSWORD_FILE", "KAFKA_SASL_PASSWORD", ""),
    ("KAFKA_SSL_KEY_PASSWORD_FILE", "KAFKA_SSL_KEY_PASSWORD", ""),
]
ROW = re.compile(r"^\| `(?P<var>[A-Z0-9_]+)` \| (?P<default>.*?) \| (?P<meaning>.*) \|$")
GROUP = re.compile(r"^\s*# --- (?P<name>[a-z][a-z -]*[a-z]) -+\s*$")


def groups() -> list[tuple[str, list[str]]]:
    """The settings' groups, in order, from the `# --- name ---` comments of Settings' body."""
    source = (ROOT / "config" / "settings.py").read_text().splitlines()
    names = {f.name for f in dataclasses.fields(Settings)}
    out: list[tuple[str, list[str]]] = []
    in_class = False
    for line in source:
        if line.startswith("class Settings"):
            in_class = True
            continue
        if not in_class:
            continue
        if line and not line.startswith((" ", "#")):
            break
        m = GROUP.match(line)
        if m:
            out.append((m["name"], []))
            continue
        field = re.match(r"^    ([a-z_][a-z0-9_]*): ", line)
        if field and field[1] in names:
            if not out:
                out.append(("settings", []))
            out[-1][1].append(ENV[field[1]])
    listed = [v for _, vs in out for v in vs]
    missing = [ENV[f.name] for f in dataclasses.fields(Settings) if ENV[f.name] not in listed]
    if missing:  # a field outside any group: still documented
        out.append(("other", missing))
    for var, after, _ in EXTRA:
        for _, vs in out:
            if after in vs:
                vs.insert(vs.index(after) + 1, var)
    return out


def defaults() -> dict[str, str]:
    values = Settings(home=Path("~/.cache/tastegraph")).masked()
    for f in dataclasses.fields(Settings):
        if f.default_factory is default_home:
            values[ENV[f.name]] = "~/.cache/tastegraph"
    for var, _, default in EXTRA:
        values[var] = default
    return values


def cell(value: str) -> str:
    return f"`{value}`" if value else "*(empty)*"


def current_meanings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            out[m["var"]] = m["meaning"].strip()
    return out


def render_table(meanings: dict[str, str]) -> str:
    values = defaults()
    lines = [BEGIN]
    for name, variables in groups():
        lines += ["", f"**{name.capitalize()}**", "", "| Variable | Default | Meaning |"]
        lines.append("| --- | --- | --- |")
        for var in variables:
            meaning = meanings.get(var) or TODO
            lines.append(f"| `{var}` | {cell(values[var])} | {meaning} |")
    lines += ["", END]
    return "\n".join(lines)


def render(text: str) -> str:
    table = render_table(current_meanings(text))
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + table + tail
    return text.rstrip("\n") + "\n\n" + table + "\n"


def render_compose(text: str) -> str:
    """docker-compose.yml with its pass-through block listing every setting compose does not set."""
    head, rest = text.split(COMPOSE_BEGIN + "\n", 1)
    _, tail = rest.split(COMPOSE_END + "\n", 1)
    lines = [f"  {v}: ${{{v}:-}}" for _, vs in groups() for v in vs if v not in COMPOSE_OWN]
    return (
        head
        + COMPOSE_BEGIN
        + "\n"
        + "".join(f"{line}\n" for line in lines)
        + COMPOSE_END
        + "\n"
        + tail
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail instead of rewriting")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    new = render(text)
    compose, new_compose = COMPOSE.read_text(), render_compose(COMPOSE.read_text())
    todo = [line.split("`")[1] for line in new.splitlines() if line.endswith(f"| {TODO} |")]
    if args.check:
        problems = []
        if new != text:
            problems.append(f"{DOC.relative_to(ROOT)} is stale: run scripts/config-table.py")
        if new_compose != compose:
            problems.append(f"{COMPOSE.name} lacks settings: run scripts/config-table.py")
        if todo:
            problems.append(f"describe these settings in {DOC.name}: {', '.join(todo)}")
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    if new != text:
        DOC.write_text(new)
        print(f"updated {DOC.relative_to(ROOT)}", file=sys.stderr)
    if new_compose != compose:
        COMPOSE.write_text(new_compose)
        print(f"updated {COMPOSE.name}", file=sys.stderr)
    if todo:
        print(f"now describe: {', '.join(todo)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
