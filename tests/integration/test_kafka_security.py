"""Kafka security end to end: a second local broker (the same Kafka as `tastegraph services`) with a
SASL_SSL listener (SCRAM logins) and an SSL listener that requires a client certificate, both with
a TLS certificate from a CA this test generates (openssl); the recording is replayed through each
and consumed by the real worker into the real Neo4j. A wrong password, or no client certificate,
is one sentence and a non-zero exit, not a crash loop.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import ENV, SECRETS, Settings
from services import processes
from services.artifacts import resolve
from services.base import NotReady
from services.kafka import KAFKA, KafkaService, SecureListeners
from services.layout import Layout
from services.tools import find_java
from tools.recording import replay

from .conftest import run_sync
from .harness import RECORDING, ROOT, free_port, free_ports, isolated, topic_map

pytestmark = pytest.mark.integration
USER = "tastegraph-worker"
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str  # the SASL_SSL listener
    cafile: Path
    password: str
    mtls_bootstrap: str  # the SSL listener that requires a client certificate
    client_cert: Path
    client_key: Path


def make_pki(d: Path) -> tuple[Path, Path]:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate (CN=
    tastegraph, client.pem/client.key) signed by it; returns the CA's certificate and the broker's
    PEM keystore (PKCS#8 key, then the chain)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=tastegraph test CA", "-days", "1",
    )  # fmt: skip
    openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "server.key"
    )
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
    )  # fmt: skip
    openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "client.key"
    )
    openssl("req", "-new", "-key", "client.key", "-subj", "/CN=tastegraph", "-out", "client.csr")
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", "client.pem",
    )  # fmt: skip
    keystore = d / "keystore.pem"
    keystore.write_text(
        "".join((d / f).read_text() for f in ("server.key", "server.pem", "ca.pem"))
    )
    keystore.chmod(0o600)
    return d / "ca.pem", keystore


@pytest.fixture(scope="module")
def secure_broker(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureBroker]:
    """A Kafka broker of its own (a fresh data directory, so the SCRAM login is created when its
    storage is formatted), with a SASL_SSL listener beside the plaintext one its probe uses."""
    home = tmp_path_factory.mktemp("sasl-kafka")
    pki = tmp_path_factory.mktemp("pki")
    cafile, keystore = make_pki(pki)
    password = secrets.token_urlsafe(18)
    secure_port, mtls_port = free_port(), free_port()
    broker_settings = Settings(home=home, local_kafka_port=free_ports(0, 1))
    listeners = SecureListeners(
        secure_port, keystore, {USER: password}, ssl_port=mtls_port, truststore=cafile
    )
    service = KafkaService(broker_settings, listeners)
    java = find_java()
    # the jars that `tastegraph services up` already resolved for the main broker
    classpath = resolve(KAFKA, Layout.of(settings).artifacts)
    service.prepare(java, classpath)
    pid = processes.spawn(service.argv(java, classpath), service.console_log, service.pid_file)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert processes.alive(pid), processes.log_excerpt(service.logs)
            try:
                service.probe(5.0)
                break
            except NotReady as e:
                assert time.monotonic() < deadline, f"the SASL_SSL test broker did not start: {e}"
                time.sleep(0.5)
        yield SecureBroker(
            f"127.0.0.1:{secure_port}",
            cafile,
            password,
            f"127.0.0.1:{mtls_port}",
            pki / "client.pem",
            pki / "client.key",
        )
    finally:
        processes.stop(pid, 30.0)


def secured(settings: Settings, broker: SecureBroker, password: str | None = None) -> Settings:
    return isolated(
        settings,
        kafka_bootstrap_servers=broker.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=SecretStr(password or broker.password),
        kafka_ssl_cafile=str(broker.cafile),
    )


def with_client_certificate(settings: Settings, broker: SecureBroker, cert: bool) -> Settings:
    return isolated(
        settings,
        kafka_bootstrap_servers=broker.mtls_bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(broker.cafile),
        kafka_ssl_certfile=str(broker.client_cert) if cert else "",
        kafka_ssl_keyfile=str(broker.client_key) if cert else "",
    )


def worker_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The subprocess' environment: the settings as variables, the Kafka password from a file."""
    env = dict(os.environ) | settings.masked()
    for name in SECRETS:
        env[ENV[name]] = getattr(settings, name).get_secret_value()
    secret = tmp_path / "kafka-password"
    secret.write_text(env.pop("KAFKA_SASL_PASSWORD") + "\n")
    if settings.kafka_security_protocol.startswith("SASL_"):
        env["KAFKA_SASL_PASSWORD_FILE"] = str(secret)
    env.pop("NEO4J_URI")  # empty: the local Neo4j, with the password given
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_command(
    env: dict[str, str], *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def count(driver: Any, database: str, query: str) -> int:
    records, _, _ = driver.execute_query(query, database_=database)
    return int(records[0][0])


def test_the_worker_runs_over_sasl_ssl_with_scram(
    settings: Settings, secure_broker: SecureBroker, clean_graph: Any, tmp_path: Path
) -> None:
    s = secured(settings, secure_broker)
    # the producers of `replay` connect with the same options (SCRAM-SHA-512 over TLS)
    run_sync(replay(s, [RECORDING], topic_map=topic_map(s), progress=False))
    env = worker_env(s, tmp_path)
    done = run_command(env, "worker", "--no-metrics", "--until-idle", "3", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    driver, db = clean_graph, s.neo4j_database
    assert count(driver, db, "MATCH (u:User) RETURN count(u)") == 5
    assert count(driver, db, "MATCH (i:Item) RETURN count(i)") == 8
    assert count(driver, db, "MATCH (:User)-[r:INTERESTED_IN]->(:Item) RETURN count(r)") == 19
    assert secure_broker.password not in done.stdout + done.stderr


@pytest.mark.parametrize("command", [["worker", "--no-metrics"], ["offsets", "show"]])
def test_a_wrong_password_is_one_sentence_and_a_non_zero_exit(
    settings: Settings, secure_broker: SecureBroker, tmp_path: Path, command: list[str]
) -> None:
    s = secured(settings, secure_broker, password="not-the-password")
    started = time.monotonic()
    done = run_command(worker_env(s, tmp_path), *command, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in done.stderr.splitlines() if line.startswith("tastegraph: ")]
    assert len(errors) == 1, done.stderr
    assert "KAFKA_SASL_USERNAME" in errors[0] and "authentication failed" in errors[0]
    assert "not-the-password" not in output
    assert time.monotonic() - started < 90, "gave up only after a long retry loop"


def test_the_worker_runs_over_ssl_with_a_client_certificate(
    settings: Settings, secure_broker: SecureBroker, clean_graph: Any, tmp_path: Path
) -> None:
    s = with_client_certificate(settings, secure_broker, cert=True)
    run_sync(replay(s, [RECORDING], topic_map=topic_map(s), progress=False))
    env = worker_env(s, tmp_path)
    done = run_command(env, "worker", "--no-metrics", "--until-idle", "3", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    driver, db = clean_graph, s.neo4j_database
    assert count(driver, db, "MATCH (:User)-[r:INTERESTED_IN]->(:Item) RETURN count(r)") == 19


def test_no_client_certificate_is_one_sentence_and_a_non_zero_exit(
    settings: Settings, secure_broker: SecureBroker, tmp_path: Path
) -> None:
    s = with_client_certificate(settings, secure_broker, cert=False)
    done = run_command(worker_env(s, tmp_path), "offsets", "show", timeout=120)
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("tastegraph: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"Kafka at {secure_broker.mtls_bootstrap} (SSL)" in errors[0]
