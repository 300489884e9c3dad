"""The query commands' arguments (cli/queries.py); no Neo4j needed."""

from __future__ import annotations

import argparse

import pytest

from cli import queries

NAMES = (
    "recommend",
    "explain",
    "similar-users",
    "audience",
    "cart-complements",
    "trends",
    "churn-risk",
    "forget",
)


def parse(name: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=name)
    queries.configure_command(name, parser)
    args = parser.parse_args(argv)
    args.command = name
    return args


def test_every_command_has_json_output() -> None:
    for name in NAMES:
        parser = argparse.ArgumentParser()
        queries.configure_command(name, parser)
        assert "--json" in parser.format_help()


def test_recommend_arguments() -> None:
    args = parse("recommend", "u1")
    assert (args.user_id, args.k, args.strategy, args.json) == ("u1", 10, "blend", False)
    assert args.category_cap is None and args.now is None
    args = parse("recommend", "u1", "-k", "3", "--strategy", "content", "--json", "--now", "100")
    assert (args.k, args.strategy, args.json, args.now) == (3, "content", True, 100.0)
    with pytest.raises(SystemExit):
        parse("recommend", "u1", "--strategy", "magic")


def test_now_accepts_iso_8601_as_utc() -> None:
    assert parse("trends", "u1", "--now", "1970-01-02T00:00:00").now == 86400.0
    assert parse("trends", "u1", "--now", "1970-01-02T01:00:00+01:00").now == 86400.0
    with pytest.raises(SystemExit):
        parse("trends", "u1", "--now", "yesterday")


def test_audience_needs_exactly_one_target() -> None:
    assert parse("audience", "--category", "shoes").category == "shoes"
    assert parse("audience", "--item", "i1").item_id == "i1"
    with pytest.raises(SystemExit):
        parse("audience")
    with pytest.raises(SystemExit):
        parse("audience", "--category", "shoes", "--item", "i1")


def test_other_commands() -> None:
    assert parse("cart-complements", "i1", "i2").item_ids == ["i1", "i2"]
    assert parse("churn-risk", "--threshold", "0.5").inactive_days == 30.0
    assert parse("explain", "u1", "i1").item_id == "i1"
    assert parse("forget", "u1").user_id == "u1"
    assert parse("similar-users", "u1", "-k", "5").k == 5


def test_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError):
        queries.configure_command("nope", argparse.ArgumentParser())
