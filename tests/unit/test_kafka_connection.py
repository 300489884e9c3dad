"""Kafka security without a broker: the options every client gets, from the settings, in one place.

The same options against a real SASL_SSL/SCRAM listener: tests/integration/test_kafka_security.py.
"""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path

import pytest

from config.exceptions import ConfigError
from config.settings import Settings
from stream.kafka_connection import client_options, describe, faust_credentials, ssl_context

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "scram-Pa55-not-shown"
PACKAGES = ("config", "encoder", "graph", "finetuning", "stream", "evaluation", "tools", "cli")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a client certificate signed by it (openssl), with an encrypted key."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=tastegraph test CA", "-days", "1",
    )  # fmt: skip
    openssl("genrsa", "-aes256", "-passout", "pass:key-pass", "-out", "client.key", "2048")
    openssl(
        "req", "-new", "-key", "client.key", "-passin", "pass:key-pass", "-subj", "/CN=client",
        "-out", "client.csr",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", "client.pem",
    )  # fmt: skip
    return {name: d / name for name in ("ca.pem", "client.pem", "client.key")}


def settings_of(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"TASTEGRAPH_HOME": str(tmp_path), **env})


def test_plaintext_by_default(tmp_path: Path) -> None:
    s = settings_of(tmp_path, KAFKA_BOOTSTRAP_SERVERS="k1:9092,k2:9092")
    assert client_options(s) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(s) is None
    assert describe(s) == "k1:9092,k2:9092 (PLAINTEXT)"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_each_mechanism(tmp_path: Path, pki: dict[str, Path], mechanism: str) -> None:
    from faust.auth import SASLCredentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = settings_of(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS="broker.example:9096",
        KAFKA_SECURITY_PROTOCOL="sasl_ssl",
        KAFKA_SASL_MECHANISM=mechanism.lower(),
        KAFKA_SASL_USERNAME="svc-tastegraph",
        KAFKA_SASL_PASSWORD=PASSWORD,
        KAFKA_SSL_CAFILE=str(pki["ca.pem"]),
    )
    options = client_options(s)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "svc-tastegraph"
    assert options["sasl_plain_password"] == PASSWORD
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_credentials(s)
    assert isinstance(credentials, SASLCredentials)
    # what Faust hands to its own aiokafka clients: the same options
    faust_options = credentials_to_aiokafka_auth(credentials)
    assert {k: v for k, v in faust_options.items() if k != "ssl_context"} == {
        k: v for k, v in options.items() if k not in ("ssl_context", "bootstrap_servers")
    }
    assert faust_options["ssl_context"] is not None
    assert PASSWORD not in repr(credentials) and PASSWORD not in describe(s)
    assert describe(s) == f"broker.example:9096 (SASL_SSL, {mechanism} as 'svc-tastegraph')"


def test_sasl_plaintext_has_no_tls(tmp_path: Path) -> None:
    s = settings_of(
        tmp_path,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_USERNAME="u",
        KAFKA_SASL_PASSWORD=PASSWORD,
    )
    assert "ssl_context" not in client_options(s)
    credentials = faust_credentials(s)
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_ssl_with_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    from faust.auth import SSLCredentials

    s = settings_of(
        tmp_path,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(pki["ca.pem"]),
        KAFKA_SSL_CERTFILE=str(pki["client.pem"]),
        KAFKA_SSL_KEYFILE=str(pki["client.key"]),
        KAFKA_SSL_KEY_PASSWORD="key-pass",
        KAFKA_SSL_CHECK_HOSTNAME="false",
    )
    options = client_options(s)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert options["ssl_context"].check_hostname is False
    assert isinstance(faust_credentials(s), SSLCredentials)


def test_a_wrong_key_password_is_one_sentence(tmp_path: Path, pki: dict[str, Path]) -> None:
    s = settings_of(
        tmp_path,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CERTFILE=str(pki["client.pem"]),
        KAFKA_SSL_KEYFILE=str(pki["client.key"]),
        KAFKA_SSL_KEY_PASSWORD="wrong",
    )
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEY_PASSWORD right"):
        ssl_context(s)


def test_a_cafile_that_is_no_certificate(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    s = settings_of(tmp_path, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(bogus))
    with pytest.raises(ConfigError, match=r"^KAFKA_SSL_CAFILE=.* holds no usable CA certificate"):
        ssl_context(s)


def test_every_kafka_client_gets_the_security_options() -> None:
    """Every aiokafka client built by the product passes ``**client_options(settings)``, and the
    Faust app ``broker_credentials``: a new client that forgets them fails here. (services/ builds
    one admin client: the probe of the local, plaintext broker of `tastegraph services`.)"""
    clients = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
    found, missing = 0, []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                if name.split(".")[-1] in clients:
                    found += 1
                    spread = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
                    if "client_options(settings)" not in spread:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
                elif name == "faust.App":
                    found += 1
                    keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    if keywords.get("broker_credentials") != "faust_credentials(settings)":
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} faust.App")
    assert found >= 7, "found too few Kafka clients: has the code moved?"
    assert not missing, missing
