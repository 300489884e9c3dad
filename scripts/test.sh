#!/usr/bin/env bash
# The README's test command (`make test`): install, lint, start the real services, run every test,
# stop what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${TASTEGRAPH_VENV:-$HOME/.cache/tastegraph/venv}
export PATH="$VENV/bin:$PATH"
echo "== lint" >&2
ruff check .
ruff format --check .
mypy config encoder graph finetuning stream evaluation services tools cli
if [ -x scripts/ensure-prometheus.sh ]; then scripts/ensure-prometheus.sh; fi
started=0
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}${NEO4J_URI:-}" ]; then
  if ! tastegraph services status --quiet; then started=1; fi
  tastegraph services up
fi
stop() { if [ "$started" = 1 ]; then tastegraph services down; fi; }
trap stop EXIT
echo "== tests" >&2
python -m pytest "$@"
