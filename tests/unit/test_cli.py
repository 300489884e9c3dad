"""The command line without the services: help texts, bad flags, and the one place that turns the
errors a user can cause into one sentence and a non-zero exit (issue 17)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, _sentence, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_every_command_has_its_own_description() -> None:
    helps = [help_text for _, help_text in COMMANDS.values()]
    assert len(set(helps)) == len(helps)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_is_explained_and_names_no_other_command(name: str) -> None:
    """A help text copied from another command names that command (`recommend --now` once
    explained prune-ledger's days); a default that is not stated is a surprise."""
    parser = _subparser(name)
    others = [c for c in COMMANDS if c != name and ("-" in c or c == "forget")]
    for action in _options(parser):
        if isinstance(action, argparse._SubParsersAction) or not action.option_strings:
            continue
        text = action.help or ""
        assert text.strip(), f"{name} {action.option_strings[0]} has no help"
        for other in others:
            assert not re.search(rf"(?<!tastegraph ){re.escape(other)}\b", text), (
                f"{name} {action.option_strings[0]} mentions {other}: {text}"
            )


def test_recommend_states_its_exclusion_default() -> None:
    action = next(a for a in _options(_subparser("recommend")) if "--exclude" in a.option_strings)
    assert action.default == "purchased"
    assert "purchased, the default" in (action.help or "")


def test_a_bad_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["recommend", "alice", "--exclude", "bought"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'bought'" in err and "--help" in err


class _Settings:
    neo4j_url = "bolt://127.0.0.1:1"
    neo4j_user = "neo4j"
    neo4j_database = "neo4j"
    kafka_servers = "127.0.0.1:2"


def test_known_errors_become_one_sentence() -> None:
    import neo4j.exceptions
    from aiokafka.errors import KafkaConnectionError

    from config.exceptions import ConfigError

    cases = {
        neo4j.exceptions.AuthError("The client is unauthorized"): "refused the credentials",
        neo4j.exceptions.ServiceUnavailable("Couldn't connect"): "is not reachable",
        KafkaConnectionError("Unable to bootstrap"): "Kafka at 127.0.0.1:2 is not reachable",
        ConfigError("TASTEGRAPH_X must be positive"): "TASTEGRAPH_X must be positive",
    }
    for error, expected in cases.items():
        sentence = _sentence(error, _Settings())
        assert sentence is not None and expected in sentence
        assert "\n" not in sentence
    # a bug keeps its traceback
    assert _sentence(KeyError("x"), _Settings()) is None


def test_a_wrong_password_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import neo4j.exceptions

    import stream.runtime

    class Driver:
        def verify_connectivity(self) -> None:
            raise neo4j.exceptions.AuthError("The client is unauthorized due to authentication.")

        def close(self) -> None:
            pass

    monkeypatch.setenv("TASTEGRAPH_HOME", str(tmp_path))
    monkeypatch.setattr(stream.runtime, "open_store", lambda settings: (Driver(), None))
    assert main(["similar-users", "alice"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused the credentials of user 'neo4j'" in err


def test_a_closed_pipe_ends_quietly_with_141() -> None:
    """`tastegraph COMMAND | head`: no BrokenPipeError traceback, exit 128 + SIGPIPE."""
    script = (
        "import sys\n"
        "import cli.config\n"
        "def run(args, settings):\n"
        "    for _ in range(100000):\n"
        "        print('x' * 80)\n"
        "    return 0\n"
        "cli.config.run = run\n"
        "from cli.main import main\n"
        "sys.exit(main(['config']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `head` does
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == ""


def test_main_maps_errors_only_in_one_place() -> None:
    """Commands raise; only cli/main.py prints the sentence (no second except-and-print)."""
    for path in sorted((ROOT / "cli").glob("*.py")):
        source = path.read_text()
        if path.name == "main.py":
            continue
        assert "AuthError" not in source, path.name
