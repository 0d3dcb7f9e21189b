#!/usr/bin/env bash
# Run the authbridge benchmark suite (not part of CI); about 15 minutes on 2 cores.
#   bash bench/run.sh            full run: writes bench/results.json and docs/benchmarks.md
#   bash bench/run.sh --quick    smoke run: writes bench/out/results-quick.json only
#   bash bench/run.sh --only scale --merge    one section, recorded beside the others
# The scale section runs its own PostgreSQL cluster (initdb from /usr/lib/postgresql/*/bin,
# as the postgres user when root) and redis-server when they are installed.
# Installs wrk and Node.js (Debian packages) if missing and the "bench" and "postgres" extras into
# the venv; the token benchmark installs npm oidc-provider into the cache the interop tests use.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk
fi

# The token benchmark runs npm oidc-provider beside authbridge.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi

if [ ! -x "$PY" ]; then
  python3 -m venv "$ROOT/.venv"
  PY="$ROOT/.venv/bin/python"
fi

# Use the source tree even if the package is not installed (editable or not).
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import authbridge.testing, fastapi, uvicorn, httpx, joserfc, jwt, cryptography" \
    >/dev/null 2>&1; then
  "$PY" -m pip install -q -e "$ROOT[bench]" \
    || "$PY" -m pip install -q "pyjwt[crypto]>=2.9" "joserfc>=1.0" "cryptography>=43" \
      "fastapi>=0.115" "httpx>=0.27" "pydantic>=2.7" "uvicorn>=0.30"
fi

# The token benchmark's PostgreSQL rows need asyncpg (the "postgres" extra).
if ! "$PY" -c "import asyncpg" >/dev/null 2>&1; then
  "$PY" -m pip install -q -e "$ROOT[bench,postgres]" || "$PY" -m pip install -q "asyncpg>=0.29"
fi

exec "$PY" -m bench "$@"
