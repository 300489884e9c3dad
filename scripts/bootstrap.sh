#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs tastegraph into it.
# The environment lives outside the repository so that later runs and clones reuse it; it is
# reinstalled when pyproject.toml or the checkout's path changes. pip's cache makes a reinstall cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TASTEGRAPH_VENV:-$HOME/.cache/tastegraph/venv}
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
  echo "tastegraph needs Python 3.11 or newer: install python3 (and python3-venv) first" >&2
  exit 1
fi
want=$( (cat pyproject.toml; pwd) | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.tastegraph-stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing tastegraph and its dependencies into $VENV (first time: several minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" > "$VENV/.tastegraph-stamp"
fi
