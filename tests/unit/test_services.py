"""`tastegraph services` without the network: rendered files, tool checks, pid handling."""

from __future__ import annotations

import argparse
import os
import re
import signal
import stat
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import services
from cli import services as command
from config.exceptions import ConfigError, ServicesError
from config.settings import Settings
from services import processes
from services.artifacts import Artifact, render_pom, resolve
from services.kafka import KAFKA, KafkaService, SecureListeners, new_cluster_id
from services.neo4j import NEO4J, Neo4jService, read_or_create_password
from services.tools import find_java, find_mvn, java_major

POM = "{http://maven.apache.org/POM/4.0.0}"


def make_settings(home: Path, kafka: int = 19092, neo4j: int = 17687, **env: str) -> Settings:
    return Settings.from_env(
        {
            "TASTEGRAPH_HOME": str(home),
            "TASTEGRAPH_LOCAL_KAFKA_PORT": str(kafka),
            "TASTEGRAPH_LOCAL_NEO4J_PORT": str(neo4j),
            **env,
        }
    )


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_pom_declares_the_pinned_artifacts_and_a_runtime_copy() -> None:
    for artifact in (KAFKA, NEO4J):
        root = ET.fromstring(render_pom(artifact))
        deps = {
            f"{d.findtext(POM + 'groupId')}:{d.findtext(POM + 'artifactId')}:"
            f"{d.findtext(POM + 'version')}"
            for d in root.iter(POM + "dependency")
        }
        assert deps == set(artifact.coordinates)
        assert root.findtext(f"{POM}packaging") == "pom"
        config = root.find(f".//{POM}plugin/{POM}configuration")
        assert config is not None
        assert config.findtext(f"{POM}includeScope") == "runtime"
    assert "org.apache.kafka:kafka_2.13:3.9.2" in KAFKA.coordinates
    assert "org.neo4j:neo4j:5.26.30" in NEO4J.coordinates


def test_kafka_properties_are_a_loopback_kraft_node_on_derived_ports(tmp_path: Path) -> None:
    kafka = KafkaService(make_settings(tmp_path, kafka=19092))
    props = properties(kafka.render_properties())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "services" / "kafka" / "data")
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "4"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in ("offsets.topic", "transaction.state.log"):
        assert props[f"{key}.replication.factor"] == "1"
    assert props["default.replication.factor"] == "1"
    hosts = re.findall(
        r"//([^:,]+):|@([^:,]+):", props["listeners"] + props["controller.quorum.voters"]
    )
    assert {h for pair in hosts for h in pair if h} == {"127.0.0.1"}
    assert kafka.ports == (19092, 19093)
    log4j = kafka.render_log4j()
    assert str(tmp_path / "services" / "kafka" / "logs" / "server.log") in log4j


def test_kafka_command_line_has_the_heap_marker_and_main_class(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    argv = KafkaService(settings).argv("/usr/bin/java", "/x/lib/*")
    assert argv[0] == "/usr/bin/java"
    assert "-Xmx512m" in argv
    assert argv[-2:] == ["kafka.Kafka", str(tmp_path / "services" / "kafka" / "server.properties")]
    assert f"-Dtastegraph.service=kafka@{tmp_path}" in argv
    assert argv[argv.index("-cp") + 1] == "/x/lib/*"


def test_cluster_ids_are_22_url_safe_characters() -> None:
    ids = {new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)


def test_neo4j_conf_serves_bolt_on_loopback_only(tmp_path: Path) -> None:
    neo4j = Neo4jService(make_settings(tmp_path, neo4j=17687))
    conf = properties(neo4j.render_conf())
    assert conf["server.bolt.listen_address"] == "127.0.0.1:17687"
    assert conf["server.default_listen_address"] == "127.0.0.1"
    assert conf["server.http.enabled"] == "false"
    assert conf["server.https.enabled"] == "false"
    assert conf["server.memory.heap.max_size"] == "1g"
    assert conf["server.memory.pagecache.size"] == "512m"
    assert conf["dbms.security.auth_enabled"] == "true"
    base = tmp_path / "services" / "neo4j"
    assert conf["server.directories.data"] == str(base / "data")
    assert conf["server.directories.logs"] == str(base / "logs")
    ports = {int(p) for p in re.findall(r":(\d+)$", "\n".join(conf.values()), re.M)}
    assert ports == {17687} == set(neo4j.ports)
    argv = neo4j.argv("/usr/bin/java", "/y/lib/*")
    assert argv[-3:] == [
        "org.neo4j.server.CommunityEntryPoint",
        f"--home-dir={base}",
        f"--config-dir={base / 'conf'}",
    ]
    assert "-Xmx1g" in argv


def test_instances_with_distinct_ports_never_share_one(tmp_path: Path) -> None:
    def ports(kafka: int, neo4j: int) -> set[int]:
        s = make_settings(tmp_path / str(kafka), kafka=kafka, neo4j=neo4j)
        return {p for svc in services.control.services(s) for p in svc.ports}

    default = ports(9092, 7687)
    assert default == {9092, 9093, 7687}
    assert default.isdisjoint(ports(19092, 17687))


def test_password_file_is_private_stable_and_read_by_settings(tmp_path: Path) -> None:
    path = tmp_path / "neo4j-password"
    first = read_or_create_password(path)
    assert len(first) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_password(path, "ignored-now") == first
    assert make_settings(tmp_path).neo4j_password.get_secret_value() == first
    assert read_or_create_password(tmp_path / "other", "chosen") == "chosen"


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "neo4j-password"
    read_or_create_password(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"can be read by its group and other users.*chmod 600"):
        read_or_create_password(path)


def test_java_arguments_travel_in_a_private_file(tmp_path: Path) -> None:
    """`run_java` puts the arguments (a password among them) in an @file that only the user can
    read and that is gone afterwards; the command line shows only its name."""
    fake_java = tmp_path / "java"
    fake_java.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > "$0.argv"\n'
        'f="${1#@}"; stat -c %a "$f" > "$0.mode"; cat "$f" > "$0.file"\n'
    )
    fake_java.chmod(0o755)
    secret = 'pa ss"word\\x'
    done = processes.run_java(
        str(fake_java), ["-cp", "lib/*", "Main", secret], tmp_path / "run", 10
    )
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "java.argv").read_text()
    assert secret not in argv and argv.startswith("@")
    assert (tmp_path / "java.mode").read_text().strip() == "600"
    lines = (tmp_path / "java.file").read_text().splitlines()
    assert lines == ['"-cp"', '"lib/*"', '"Main"', '"pa ss\\"word\\\\x"']  # Java's quoting
    assert not list((tmp_path / "run").iterdir()), "the argument file is deleted"


def test_kafka_sasl_ssl_listener_for_tests(tmp_path: Path) -> None:
    listener = SecureListeners(
        19099,
        tmp_path / "keystore.pem",
        {"svc": "scram-secret"},
        ssl_port=19098,
        truststore=tmp_path / "ca.pem",
    )
    kafka = KafkaService(make_settings(tmp_path, kafka=19092), listener)
    text = kafka.render_properties()
    props = properties(text)
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SASL_SSL://127.0.0.1:19099,"
        "SSL://127.0.0.1:19098"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19099,SSL://127.0.0.1:19098"
    )
    assert props["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL,SSL:SSL")
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert props["listener.name.ssl.ssl.truststore.location"] == str(tmp_path / "ca.pem")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert "scram-secret" not in text, "logins are created by the storage tool, not configured"
    assert kafka.ports == (19092, 19093, 19099, 19098)
    assert listener.format_args() == [
        "--add-scram",
        "SCRAM-SHA-256=[name=svc,password=scram-secret]",
        "--add-scram",
        "SCRAM-SHA-512=[name=svc,password=scram-secret]",
    ]


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ("no version here", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert java_major(output) == major


def test_missing_java_or_mvn_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServicesError, match="install a Java 17"):
        find_java()
    with pytest.raises(ServicesError, match="install Maven"):
        find_mvn()
    old = tmp_path / "java"
    old.write_text("#!/bin/sh\necho 'java version \"1.8.0_292\"' >&2\n")
    old.chmod(0o755)
    with pytest.raises(ServicesError, match="Java 8: install a Java 17"):
        find_java()


def test_resolved_artifacts_are_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = Artifact("demo", "1.0", ("org.example:demo:1.0",))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ServicesError, match="install Maven"):
        resolve(artifact, tmp_path)
    # what a successful first run leaves behind
    lib = tmp_path / "demo-1.0" / "lib"
    lib.mkdir(parents=True)
    import hashlib

    (lib / ".complete").write_text(hashlib.sha256(render_pom(artifact).encode()).hexdigest())
    assert resolve(artifact, tmp_path) == f"{lib}/*"
    # a changed pom (e.g. a new version) is resolved again
    (lib / ".complete").write_text("stale")
    with pytest.raises(ServicesError, match="install Maven"):
        resolve(artifact, tmp_path)


def test_external_services_start_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, KAFKA_BOOTSTRAP_SERVERS="kafka.example:9092")
    said: list[str] = []
    states = services.up(settings, say=said.append)
    assert [(s.name, s.state, s.address) for s in states] == [
        ("kafka", "external", "kafka.example:9092"),
        ("neo4j", "external", "bolt://127.0.0.1:17687"),
    ]
    assert "using those services" in said[0]
    assert not (tmp_path / "services").exists()
    assert [s.state for s in services.down(settings, say=said.append)] == ["external"] * 2
    assert all(s.running for s in services.status(settings))


def test_cli_status_quiet_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(["status", "--quiet"])
    external = make_settings(tmp_path, NEO4J_URI="bolt://db.example:7687")
    assert command.run(args, external) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):
        parser.parse_args(["sideways"])


def _spawn_python(tmp_path: Path, code: str, mark: str) -> int:
    return processes.spawn(
        [sys.executable, "-c", code, mark], tmp_path / "logs" / "out.log", tmp_path / "p.pid"
    )


def test_detached_process_is_found_by_marker_and_stopped(tmp_path: Path) -> None:
    mark = processes.marker("demo", tmp_path)
    pid = _spawn_python(tmp_path, "import time; print('hello', flush=True); time.sleep(60)", mark)
    try:
        assert os.getsid(pid) == pid  # its own session: it survives the caller's terminal
        assert processes.running_pid(tmp_path / "p.pid", mark) == pid
        assert processes.running_pid(tmp_path / "p.pid", mark + "-other") is None
        deadline = time.monotonic() + 30
        while "hello" not in (tmp_path / "logs" / "out.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert processes.stop(pid, timeout_s=30) is False
        assert not processes.alive(pid)
        assert processes.running_pid(tmp_path / "p.pid", mark) is None
    finally:
        if processes.alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    mark = processes.marker("stubborn", tmp_path)
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    pid = _spawn_python(tmp_path, code, mark)
    try:
        deadline = time.monotonic() + 30
        while "ready" not in (tmp_path / "logs" / "out.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert processes.stop(pid, timeout_s=0.5) is True
        assert not processes.alive(pid)
    finally:
        if processes.alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_stale_pid_file_means_stopped(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, kafka=1, neo4j=3)  # nothing listens on ports 1-4
    kafka = KafkaService(settings)
    kafka.pid_file.parent.mkdir(parents=True)
    kafka.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not our server: a reused pid
    states = services.status(settings)
    assert [(s.name, s.state) for s in states] == [("kafka", "stopped"), ("neo4j", "stopped")]
    assert [s.detail for s in services.down(settings, say=lambda _: None)] == [
        "was not running"
    ] * 2
    assert not kafka.pid_file.exists()


def test_a_failed_start_shows_the_error_lines_of_the_logs(tmp_path: Path) -> None:
    server = tmp_path / "server.log"
    server.write_text(
        "[t] INFO starting\n"
        "[t] ERROR Unable to start acceptor (kafka.network.DataPlaneAcceptor)\n"
        "org.apache.kafka.common.KafkaException: Socket server failed to bind: in use.\n"
        "[t] INFO shutting down\n"
    )
    excerpt = processes.log_excerpt([server, tmp_path / "missing.log"])
    assert excerpt.splitlines() == [
        "[t] ERROR Unable to start acceptor (kafka.network.DataPlaneAcceptor)",
        "org.apache.kafka.common.KafkaException: Socket server failed to bind: in use.",
    ]
    quiet = tmp_path / "quiet.log"
    quiet.write_text("a\nb\n")
    assert processes.log_excerpt([quiet]) == "a\nb"
    assert 9092 not in processes.ephemeral_ports()


def test_a_port_held_by_another_program_is_reported_before_anything_starts(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        settings = make_settings(tmp_path, kafka=1, neo4j=busy)  # nothing listens on ports 1-2
        states = {s.name: s for s in services.status(settings)}
        assert states["neo4j"].state == "port-busy"
        assert not states["neo4j"].running
        with pytest.raises(ServicesError, match=f"neo4j cannot start: port {busy} is used"):
            services.up(settings, say=lambda _: None)
    assert not list((tmp_path / "services").glob("*/*.pid"))


def test_a_relative_home_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    kafka = KafkaService(make_settings(Path("rel")))
    assert properties(kafka.render_properties())["log.dirs"] == str(
        tmp_path / "rel" / "services" / "kafka" / "data"
    )
    assert kafka.mark == f"-Dtastegraph.service=kafka@{tmp_path / 'rel'}"


def test_cli_reports_a_missing_java_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {
        "PATH": str(tmp_path / "bin"),  # neither java nor mvn
        "TASTEGRAPH_HOME": str(tmp_path / "home"),
        "TASTEGRAPH_LOCAL_KAFKA_PORT": "1",  # nothing listens on ports 1-3
        "TASTEGRAPH_LOCAL_NEO4J_PORT": "3",
    }
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "services", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "tastegraph: No `java` found: install a Java 17 or newer JDK "
        "(e.g. `apt-get install -y openjdk-17-jdk-headless`)."
    ]


def test_a_too_short_neo4j_password_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    neo4j = Neo4jService(make_settings(tmp_path, NEO4J_PASSWORD="short"))
    with pytest.raises(ServicesError, match="minimum of 8 characters"):
        neo4j.prepare("/nonexistent/java", "/nonexistent/lib/*")
    assert not (tmp_path / "neo4j-password").exists()
