"""Settings: parsing from the environment, validation, secrets masking, `tastegraph config`."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import pickle
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from cli import config as config_command
from config.exceptions import ConfigError
from config.settings import ENV, SecretStr, Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Pa55word-xyz"
SERVICE_NAMES = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "neo4j_uri": "NEO4J_URI",
    "neo4j_user": "NEO4J_USER",
    "neo4j_password": "NEO4J_PASSWORD",
    "neo4j_database": "NEO4J_DATABASE",
}


def settings_from(tmp_path: Path, **env: str) -> Settings:
    """Settings from exactly ``env`` (nothing from the process), home in ``tmp_path``."""
    return Settings.from_env({"TASTEGRAPH_HOME": str(tmp_path), **env})


# --- names --------------------------------------------------------------------------------------


def test_every_field_has_its_environment_variable() -> None:
    for f in dataclasses.fields(Settings):
        expected = SERVICE_NAMES.get(f.name, f"TASTEGRAPH_{f.name.upper()}")
        assert ENV[f.name] == expected
    assert len(set(ENV.values())) == len(ENV), "two settings share a variable"
    assert set(ENV) == {f.name for f in dataclasses.fields(Settings)}


# --- parsing ------------------------------------------------------------------------------------


def test_defaults_when_the_environment_is_empty(tmp_path: Path) -> None:
    s = settings_from(tmp_path)
    assert s.max_batch == 2000 and s.max_wait_s == 0.25
    assert s.device == "auto" and s.app_id == "tastegraph"
    assert s.neo4j_password.get_secret_value() == ""
    assert s.use_local_services
    assert s.kafka_servers == f"127.0.0.1:{s.local_kafka_port}"
    assert s.neo4j_url == f"bolt://127.0.0.1:{s.local_neo4j_port}"
    assert s.home == tmp_path


def test_every_type_is_parsed(tmp_path: Path) -> None:
    s = settings_from(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS="k1:9092,k2:9092",
        NEO4J_URI="neo4j+s://abcd1234.databases.neo4j.io",
        NEO4J_PASSWORD=PASSWORD,
        TASTEGRAPH_MAX_BATCH="64",
        TASTEGRAPH_MAX_WAIT_S="1.5",
        TASTEGRAPH_EXTRA_EVENT_TYPES=" add_to_cart , wishlist ,",
        TASTEGRAPH_WEIGHTS="browse=1,click=2,purchase=5,add_to_cart=3, wishlist = 0.5",
        TASTEGRAPH_DEVICE="cuda:1",
    )
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092" and s.kafka_servers == "k1:9092,k2:9092"
    assert s.neo4j_url == "neo4j+s://abcd1234.databases.neo4j.io", "the scheme is kept as given"
    assert not s.use_local_services
    assert s.neo4j_password == SecretStr(PASSWORD)
    assert s.max_batch == 64 and isinstance(s.max_batch, int)
    assert s.max_wait_s == 1.5
    assert s.extra_event_types == ("add_to_cart", "wishlist")
    assert s.event_types == ("click", "browse", "purchase", "add_to_cart", "wishlist")
    assert dict(s.weights) == {
        "browse": 1.0,
        "click": 2.0,
        "purchase": 5.0,
        "add_to_cart": 3.0,
        "wishlist": 0.5,
    }
    assert s.device == "cuda:1"


def test_home_expands_the_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TASTEGRAPH_HOME", raising=False)
    s = Settings.from_env({"TASTEGRAPH_HOME": "~/state"})
    assert s.home == tmp_path / "state"


def test_an_empty_value_means_the_default(tmp_path: Path) -> None:
    s = settings_from(tmp_path, TASTEGRAPH_MAX_BATCH="", NEO4J_URI="", TASTEGRAPH_DEVICE="")
    assert s.max_batch == Settings.max_batch
    assert s.neo4j_uri == "" and s.device == "auto"


def test_overrides_win_over_the_environment(tmp_path: Path) -> None:
    env = {"TASTEGRAPH_HOME": str(tmp_path), "TASTEGRAPH_LOG_LEVEL": "DEBUG"}
    assert Settings.from_env(env, log_level="WARNING").log_level == "WARNING"


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("TASTEGRAPH_MAX_BATCH", "many"),
        ("TASTEGRAPH_METRICS_PORT", "91.08"),
        ("TASTEGRAPH_MAX_WAIT_S", "soon"),
        ("TASTEGRAPH_WEIGHTS", "click:2"),
        ("TASTEGRAPH_WEIGHTS", "click=two"),
        ("TASTEGRAPH_MAX_BATCH", "0"),
        ("TASTEGRAPH_MAX_WAIT_S", "0"),
        ("TASTEGRAPH_HALF_LIFE_DAYS", "-1"),
        ("TASTEGRAPH_DEVICE", "tpu"),
        ("TASTEGRAPH_WEIGHTS", "click=2,browse=1"),  # no weight for purchase and the extra types
    ],
)
def test_a_bad_value_names_its_variable(tmp_path: Path, var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=var):
        settings_from(tmp_path, **{var: raw})


def test_extra_event_types_need_a_weight(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TASTEGRAPH_WEIGHTS.*wishlist"):
        settings_from(tmp_path, TASTEGRAPH_EXTRA_EVENT_TYPES="wishlist")


# --- the password -------------------------------------------------------------------------------


def test_password_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "neo4j-secret"
    secret.write_text(PASSWORD + "\n")
    s = settings_from(tmp_path, NEO4J_PASSWORD_FILE=str(secret), NEO4J_URI="neo4j://db:7687")
    assert s.neo4j_password.get_secret_value() == PASSWORD


def test_the_password_variable_wins_over_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "neo4j-secret"
    secret.write_text("from-the-file")
    s = settings_from(tmp_path, NEO4J_PASSWORD_FILE=str(secret), NEO4J_PASSWORD=PASSWORD)
    assert s.neo4j_password.get_secret_value() == PASSWORD


def test_the_local_services_password_only_for_the_local_services(tmp_path: Path) -> None:
    (tmp_path / "neo4j-password").write_text("local-generated\n")
    assert settings_from(tmp_path).neo4j_password.get_secret_value() == "local-generated"
    external = settings_from(tmp_path, NEO4J_URI="neo4j+s://x.databases.neo4j.io")
    assert external.neo4j_password.get_secret_value() == ""


# --- secrets never show -------------------------------------------------------------------------


def test_secret_str_hides_its_value() -> None:
    secret = SecretStr(PASSWORD)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret}"):
        assert PASSWORD not in text
    assert "*" in str(secret)
    assert str(SecretStr("")) == "", "an unset secret reads as unset"
    assert secret == SecretStr(PASSWORD) and secret != SecretStr("other")
    assert secret != PASSWORD, "a secret does not compare equal to its plain text"


def test_settings_never_show_the_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = settings_from(tmp_path, NEO4J_PASSWORD=PASSWORD, NEO4J_URI="neo4j://db:7687")
    shown = [
        repr(s),
        str(s),
        f"{s}",
        repr(dataclasses.asdict(s)),
        json.dumps(s.masked()),
        repr(dataclasses.replace(s, max_batch=1)),
    ]
    logging.getLogger("tastegraph.test").warning("settings %s", s)
    shown.append(caplog.text)
    for text in shown:
        assert PASSWORD not in text
    assert s.masked()["NEO4J_PASSWORD"] == "**********"


def test_masked_lists_every_variable_as_text(tmp_path: Path) -> None:
    s = settings_from(tmp_path, TASTEGRAPH_EXTRA_EVENT_TYPES="add_to_cart,return")
    masked = s.masked()
    assert set(masked) == set(ENV.values())
    assert all(isinstance(v, str) for v in masked.values())
    assert masked["TASTEGRAPH_MAX_BATCH"] == "2000"
    assert masked["TASTEGRAPH_EXTRA_EVENT_TYPES"] == "add_to_cart,return"
    assert masked["NEO4J_PASSWORD"] == "", "no password: nothing to mask"


def test_masked_values_parse_back_to_the_same_settings(tmp_path: Path) -> None:
    """`tastegraph config` prints a valid environment: read back, it gives the same settings."""
    original = settings_from(
        tmp_path,
        TASTEGRAPH_WEIGHTS="browse=1,click=2.5,purchase=5,add_to_cart=3,return=-5",
        TASTEGRAPH_MAX_WAIT_S="0.125",
        TASTEGRAPH_APP_ID="tg-test",
    )
    env = {k: v for k, v in original.masked().items() if k != "NEO4J_PASSWORD"}
    again = Settings.from_env(env)
    for f in dataclasses.fields(Settings):
        if f.name != "neo4j_password":
            assert getattr(again, f.name) == getattr(original, f.name), f.name


def test_settings_are_frozen_and_picklable(tmp_path: Path) -> None:
    s = settings_from(tmp_path, NEO4J_PASSWORD=PASSWORD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_batch = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(s)) == s


# --- Neo4j URIs: the driver gets the scheme as configured ---------------------------------------


@pytest.mark.parametrize(
    ("uri", "routing", "encrypted"),
    [
        ("neo4j+s://abcd1234.databases.neo4j.io", True, True),
        ("neo4j+ssc://db.example.invalid:7687", True, True),
        ("bolt+s://db.example.invalid:7687", False, True),
        ("neo4j://db.example.invalid:7687", True, False),
        ("bolt://127.0.0.1:7687", False, False),
    ],
)
def test_the_driver_takes_tls_and_routing_from_the_scheme(
    tmp_path: Path, uri: str, routing: bool, encrypted: bool
) -> None:
    """The code that opens drivers passes NEO4J_URI through, with no TLS options of its own (the
    driver refuses `encrypted=`/`trusted_certificates=` together with a `+s` scheme). Creating a
    driver does not connect, so this needs no server."""
    neo4j = pytest.importorskip("neo4j")
    from stream.runtime import open_driver

    s = settings_from(tmp_path, NEO4J_URI=uri, NEO4J_PASSWORD=PASSWORD)
    driver = open_driver(s)
    try:
        assert isinstance(driver, neo4j.Neo4jDriver if routing else neo4j.BoltDriver)
        assert driver.encrypted is encrypted
    finally:
        driver.close()


def test_driver_factories_do_not_force_a_scheme() -> None:
    """Every driver for the configured Neo4j is opened with `settings.neo4j_url` as it is."""
    opened = 0
    offenders = []
    packages = ("config", "encoder", "graph", "finetuning", "stream", "evaluation", "tools", "cli")
    # not services/: the local services' own probe talks to their bolt:// address
    for path in [p for package in packages for p in ROOT.glob(f"{package}/**/*.py")]:
        text = path.read_text()
        for m in re.finditer(r"GraphDatabase\.driver\(\s*([^,)]+)", text):
            opened += 1
            if m[1].strip() != "settings.neo4j_url":
                offenders.append(f"{path.relative_to(ROOT)}: driver({m[1].strip()}, ...)")
        for banned in ("encrypted=", "trusted_certificates=", "trust="):
            if banned in text:
                offenders.append(f"{path.relative_to(ROOT)}: {banned}")
    assert opened, "found no driver factory: update this test"
    assert not offenders, offenders


# --- `tastegraph config` ------------------------------------------------------------------------


def run_config(settings: Settings, *argv: str) -> str:
    parser = argparse.ArgumentParser()
    config_command.configure(parser)
    out = io.StringIO()
    with redirect_stdout(out):
        assert config_command.run(parser.parse_args(list(argv)), settings) == 0
    return out.getvalue()


def test_config_prints_every_variable_sorted_with_the_password_masked(tmp_path: Path) -> None:
    s = settings_from(
        tmp_path,
        NEO4J_PASSWORD=PASSWORD,
        NEO4J_URI="neo4j+s://abcd1234.databases.neo4j.io",
        TASTEGRAPH_MAX_BATCH="512",
    )
    text = run_config(s)
    assert PASSWORD not in text
    lines = text.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(ENV.values())
    values = {}
    for line in lines:
        name, _, value = line.partition(" ")
        values[name] = value.strip()
    assert values["NEO4J_PASSWORD"] == "**********"
    assert values["NEO4J_URI"] == "neo4j+s://abcd1234.databases.neo4j.io"
    assert values["TASTEGRAPH_MAX_BATCH"] == "512"
    assert values["TASTEGRAPH_HOME"] == str(tmp_path)


def test_config_json(tmp_path: Path) -> None:
    s = settings_from(tmp_path, NEO4J_PASSWORD=PASSWORD, TASTEGRAPH_DEVICE="cpu")
    text = run_config(s, "--json")
    assert PASSWORD not in text
    data = json.loads(text)
    assert data == s.masked()
    assert data["TASTEGRAPH_DEVICE"] == "cpu" and data["NEO4J_PASSWORD"] == "**********"


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {"PATH", "LANG", "LC_ALL", "SYSTEMROOT", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env |= {"HOME": str(tmp_path), "TASTEGRAPH_HOME": str(tmp_path / "home"), **extra}
    return env


def test_the_tastegraph_config_command(tmp_path: Path) -> None:
    """The real entry point: environment in, masked configuration out, exit status 0."""
    env = _cli_env(
        tmp_path,
        NEO4J_URI="neo4j+s://abcd1234.databases.neo4j.io",
        NEO4J_PASSWORD=PASSWORD,
        TASTEGRAPH_APP_ID="tg-config-test",
    )
    cmd = [sys.executable, "-m", "cli.main", "config", "--json"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["NEO4J_URI"] == "neo4j+s://abcd1234.databases.neo4j.io"
    assert data["TASTEGRAPH_APP_ID"] == "tg-config-test"
    assert data["NEO4J_PASSWORD"] == "**********"


def test_the_config_command_reports_a_bad_value_without_a_traceback(tmp_path: Path) -> None:
    env = _cli_env(tmp_path, TASTEGRAPH_MAX_BATCH="lots", NEO4J_PASSWORD=PASSWORD)
    cmd = [sys.executable, "-m", "cli.main", "config"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "TASTEGRAPH_MAX_BATCH" in done.stderr and "Traceback" not in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


# --- the configuration table of the README ------------------------------------------------------


def test_the_configuration_table_lists_every_setting() -> None:
    doc = (ROOT / "docs" / "readme" / "15-configuration.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", doc, flags=re.M))
    missing = sorted(set(ENV.values()) - rows)
    assert not missing, (
        f"add to docs/readme/15-configuration.md (scripts/config-table.py): {missing}"
    )
    assert not rows - set(ENV.values()) - {"NEO4J_PASSWORD_FILE"}, "rows of settings that are gone"


def test_the_configuration_table_is_current() -> None:
    """Defaults match Settings and every row has a description (scripts/config-table.py --check)."""
    done = subprocess.run(
        [sys.executable, "scripts/config-table.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "TASTEGRAPH_HOME"},
    )
    assert done.returncode == 0, done.stderr


def test_config_changed_shows_only_what_differs_from_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TASTEGRAPH_HOME", raising=False)
    s = Settings.from_env(
        {
            "HOME": str(tmp_path),
            "TASTEGRAPH_MAX_BATCH": "512",
            "TASTEGRAPH_MAX_WAIT_S": str(Settings.max_wait_s),  # the default, set explicitly
            "NEO4J_URI": "neo4j+s://abcd1234.databases.neo4j.io",
            "NEO4J_PASSWORD": PASSWORD,
        }
    )
    assert json.loads(run_config(s, "--changed", "--json")) == {
        "NEO4J_URI": "neo4j+s://abcd1234.databases.neo4j.io",
        "NEO4J_PASSWORD": "**********",
        "TASTEGRAPH_MAX_BATCH": "512",
    }
    text = run_config(s, "--changed")
    assert [line.split()[0] for line in text.splitlines()] == [
        "NEO4J_PASSWORD",
        "NEO4J_URI",
        "TASTEGRAPH_MAX_BATCH",
    ]
    assert PASSWORD not in text
    assert run_config(Settings.from_env({"HOME": str(tmp_path)}), "--changed") == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASTEGRAPH_LOG_LEVEL", "LOUD"),
        ("TASTEGRAPH_TOPIC_PARTITIONS", "0"),
        ("TASTEGRAPH_METRICS_PORT", "99999"),
        ("NEO4J_PASSWORD_FILE", "/nonexistent/secret"),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(name: str, value: str) -> None:
    from config.exceptions import ConfigError

    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
