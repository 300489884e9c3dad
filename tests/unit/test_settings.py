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
from config.settings import ENV, SECRETS, SecretStr, Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Pa55word-xyz"
SERVICE_NAMES = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "neo4j_uri": "NEO4J_URI",
    "neo4j_user": "NEO4J_USER",
    "neo4j_password": "NEO4J_PASSWORD",
    "neo4j_database": "NEO4J_DATABASE",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_cafile": "KAFKA_SSL_CAFILE",
    "kafka_ssl_certfile": "KAFKA_SSL_CERTFILE",
    "kafka_ssl_keyfile": "KAFKA_SSL_KEYFILE",
    "kafka_ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
    "kafka_ssl_check_hostname": "KAFKA_SSL_CHECK_HOSTNAME",
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


# a refused value for EVERY setting: a new setting without its line here (or without validation)
# fails test_every_setting_refuses_a_bad_value
BAD: dict[str, str] = {
    "kafka_bootstrap_servers": "kafka.example:notaport",
    "neo4j_uri": "http://db.example:7474",
    "neo4j_user": "two words",
    "neo4j_password": "line\nbreak",
    "neo4j_database": "no_underscores",
    "home": "{file}",
    "local_kafka_port": "65535",
    "local_neo4j_port": "0",
    "kafka_security_protocol": "TLS",
    "kafka_sasl_mechanism": "GSSAPI",
    "kafka_sasl_username": "two words",
    "kafka_sasl_password": "line\nbreak",
    "kafka_ssl_cafile": "/nonexistent/ca.pem",
    "kafka_ssl_certfile": "/nonexistent/client.pem",
    "kafka_ssl_keyfile": "/nonexistent/client.key",
    "kafka_ssl_key_password": "tab\tinside",
    "kafka_ssl_check_hostname": "maybe",
    "app_id": "my group",
    "topic_clicks": "clicks!",
    "topic_browses": "..",
    "topic_purchases": "x" * 250,
    "topic_items": "items/2",
    "topic_dead_letter": "dead letter",
    "topic_partitions": "0",
    "extra_event_types": "Add To Cart",
    "max_batch": "-5",
    "max_wait_s": "0",
    "refresh_interval_s": "-1",
    "refresh_limit": "0",
    "half_life_days": "nan",
    "weights": "click:2",
    "similar_k": "0",
    "similar_threshold": "1.5",
    "text_weight": "-1",
    "trend_days": "0",
    "blend_weights": "content=-1",
    "category_cap": "-1",
    "max_id_len": "0",
    "max_text_len": "0",
    "max_event_bytes": "-1",
    "max_clock_skew_s": "-1",
    "min_event_ts": "-1",
    "model": "two words",
    "device": "tpu",
    "encoder_backend": "tensorrt",
    "encoder_threads": "-1",
    "encoder_dtype": "banana",
    "max_tokens_per_batch": "0",
    "max_len": "1",
    "encoder_cache_size": "-1",
    "finetune_interval_s": "0",
    "finetune_min_examples": "0",
    "finetune_margin": "2",
    "finetune_budget_s": "0",
    "finetune_steps": "0",
    "finetune_batch_size": "1",
    "finetune_lr": "0",
    "finetune_max_len": "1",
    "finetune_lora": "2",
    "finetune_context_n": "0",
    "finetune_max_examples": "0",
    "finetune_holdout_fraction": "7",
    "finetune_holdout_max": "-1",
    "finetune_enabled": "enabled",
    "model_poll_s": "0",
    "reembed_limit": "0",
    "finetune_holdout_per_user": "-1",
    "finetune_query_mode": "median",
    "finetune_mode": "half",
    "similar_search": "approximate",
    "finetune_scale": "0",
    "finetune_vote_power": "0",
    "finetune_gate_resamples": "0",
    "finetune_gate_confidence": "1",
    "finetune_together": "sometimes",
    "finetune_train_layers": "-1",
    "metrics_host": "local host",
    "metrics_port": "99999",
    "log_level": "LOUD",
    "write_retry_max_s": "-5",
}


def test_every_setting_has_a_bad_value_in_the_table() -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    assert not names - set(BAD), (
        f"add a refused value for the new settings to BAD: {names - set(BAD)}"
    )
    assert not set(BAD) - names, "BAD lists settings that are gone"


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_setting_refuses_a_bad_value(tmp_path: Path, name: str) -> None:
    """One sentence: the variable, the value (masked when secret), what is allowed."""
    (tmp_path / "a-file").write_text("")
    raw = BAD[name].format(file=tmp_path / "a-file")
    with pytest.raises(ConfigError) as refused:
        settings_from(tmp_path, **{ENV[name]: raw})
    message = str(refused.value)
    assert message.startswith(f"{ENV[name]}="), message
    assert "is not allowed: it must be" in message and message.endswith(".")
    assert "\n" not in message, "one sentence"
    if "password" in name:
        assert raw not in message and "**********" in message


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_cli_override_is_validated_too(tmp_path: Path, name: str) -> None:
    """An override (a CLI flag) and dataclasses.replace go through the same validation."""
    (tmp_path / "a-file").write_text("")
    raw = BAD[name].format(file=tmp_path / "a-file")
    with pytest.raises(ConfigError, match=f"^{ENV[name]}="):
        Settings.from_env({"TASTEGRAPH_HOME": str(tmp_path)}, **{name: raw})
    with pytest.raises(ConfigError, match=f"^{ENV[name]}="):
        dataclasses.replace(settings_from(tmp_path), **{name: raw})


def test_a_worker_flag_is_refused_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main

    monkeypatch.setenv("TASTEGRAPH_HOME", str(tmp_path))
    assert main(["worker", "--max-batch", "-5"]) == 2
    err = capsys.readouterr().err
    assert "TASTEGRAPH_MAX_BATCH=-5 is not allowed: it must be a whole number >= 1." in err
    assert "Traceback" not in err
    assert main(["worker", "--max-batch", "0"]) == 2, "0 is refused, not taken for unset"
    assert "TASTEGRAPH_MAX_BATCH=0 is not allowed" in capsys.readouterr().err
    assert main(["worker", "--max-wait", "-1"]) == 2
    assert "TASTEGRAPH_MAX_WAIT_S=-1.0 is not allowed: it must be a number > 0." in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("0", False), ("no", False)],
)
def test_booleans_are_written_true_false_1_0(tmp_path: Path, raw: str, value: bool) -> None:
    s = settings_from(tmp_path, TASTEGRAPH_FINETUNE_ENABLED=raw, TASTEGRAPH_FINETUNE_LORA=raw)
    assert s.finetune_enabled is value and s.finetune_lora is value
    assert s.masked()["TASTEGRAPH_FINETUNE_ENABLED"] == ("true" if value else "false")


def test_names_are_case_insensitive_where_the_convention_is(tmp_path: Path) -> None:
    s = settings_from(tmp_path, TASTEGRAPH_LOG_LEVEL="debug")
    assert s.log_level == "DEBUG"


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
    (tmp_path / "neo4j-password").chmod(0o600)
    assert settings_from(tmp_path).neo4j_password.get_secret_value() == "local-generated"
    external = settings_from(tmp_path, NEO4J_URI="neo4j+s://x.databases.neo4j.io")
    assert external.neo4j_password.get_secret_value() == ""


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o640, "read by its group:"),
        (0o604, "read by other users:"),
        (0o644, "read by its group and other users:"),
        (0o620, "write by its group:"),
    ],
)
def test_the_local_password_file_must_be_private(tmp_path: Path, mode: int, who: str) -> None:
    local = tmp_path / "neo4j-password"
    local.write_text("local-generated\n")
    local.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        settings_from(tmp_path)
    message = str(refused.value)
    assert f"(mode {mode:04o}) can be {who}" in message and f"chmod 600 {local}" in message
    assert "local-generated" not in message


@pytest.mark.parametrize("secret", ["KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD"])
def test_kafka_secrets_from_files(tmp_path: Path, secret: str) -> None:
    (tmp_path / "ca.pem").write_text("")
    path = tmp_path / "secret"
    path.write_text(PASSWORD + "\n")
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "tastegraph",
        "KAFKA_SASL_PASSWORD": "from-the-variable",
        "KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
    }
    env.pop(secret, None)
    s = settings_from(tmp_path, **env, **{f"{secret}_FILE": str(path)})
    assert getattr(s, secret.lower()).get_secret_value() == PASSWORD
    assert s.masked()[secret] == "**********" and PASSWORD not in repr(s)
    with pytest.raises(ConfigError, match=f"^{secret}_FILE=/nonexistent cannot be read"):
        settings_from(tmp_path, **env, **{f"{secret}_FILE": "/nonexistent"})


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "does not use them"),
        ({"KAFKA_SSL_CAFILE": "{ca}"}, "does not use TLS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "{ca}"}, "go together"),
    ],
)
def test_kafka_security_settings_that_would_be_ignored_are_refused(
    tmp_path: Path, env: dict[str, str], words: str
) -> None:
    (tmp_path / "ca.pem").write_text("")
    env = {k: v.format(ca=tmp_path / "ca.pem") for k, v in env.items()}
    with pytest.raises(ConfigError, match=words):
        settings_from(tmp_path, **env)


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


# --- the configuration table of docs/configuration.md ------------------------------------------


def test_the_configuration_table_lists_every_setting() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", doc, flags=re.M))
    missing = sorted(set(ENV.values()) - rows)
    assert not missing, f"add to docs/configuration.md (scripts/config-table.py): {missing}"
    files = {ENV[name] + "_FILE" for name in SECRETS}
    assert not rows - set(ENV.values()) - files, "rows of settings that are gone"


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
