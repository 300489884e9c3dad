#!/usr/bin/env bash
# Makes sure Debian's `prometheus` (and `promtool`) are installed; the observability tests start their
# own Prometheus on a loopback port with a temporary configuration and storage directory.
# Installs with apt-get only when the binary is missing; runs `apt-get update` only when the package
# is not known to apt yet. Needs root (or sudo) the first time.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "prometheus is missing and installing it needs root: apt-get install prometheus" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null; then
  echo "prometheus is missing and this is not a Debian-like system: install Prometheus 2.x" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# serialise concurrent runs (several test sessions may call this at once)
exec 9>/tmp/tastegraph-ensure-prometheus.lock
flock 9
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if ! apt-cache show prometheus >/dev/null 2>&1 \
  || [ -z "$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
  echo "== apt-get update" >&2
  $SUDO apt-get update -q
fi
echo "== apt-get install prometheus" >&2
# --no-install-recommends: no node exporter etc.; the tests start their own server, and a
# system service that fails to start in a container (no init) is not an error for us.
$SUDO apt-get install -y -q --no-install-recommends prometheus >&2 || {
  command -v prometheus >/dev/null || exit 1
}
command -v prometheus >/dev/null && command -v promtool >/dev/null
