#!/usr/bin/env bash
# Tests the Python client (clients/python) against a real coordinator:
#   1. a venv (target/venv-py-client, or $ASDSWEEP_PY_VENV) with the pinned grpcio,
#      grpcio-tools, protobuf and pandas;
#   2. the gRPC stubs regenerated into a temporary directory must equal the committed ones
#      (a proto changed without `clients/python/generate.sh` fails here);
#   3. the offline tests (tests/test_frame.py; tests/test_tls.py, with certificates from
#      deploy/make-certs.sh);
#   4. `asdsweep serve` on a free loopback port with a temporary SQLite database and a token,
#      two `asdsweep worker`s with that token, and tests/test_live.py against them (it
#      launches sweeps/noop-demo.toml and checks the DataFrame of its results);
# and stops what it started on exit, also on failure or Ctrl-C.
#
# Usage: scripts/test-python-client.sh
# Environment: ASDSWEEP_BIN (default target/debug/asdsweep: cargo build first),
#              ASDSWEEP_PY_VENV (default target/venv-py-client)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

say() { echo "test-python-client: $*" >&2; }
die() { say "$*"; exit 1; }

# Pins (clients/python/pyproject.toml says why grpcio-tools is exact).
GRPCIO=1.85.1
GRPCIO_TOOLS=1.85.1
PROTOBUF=7.36.2
PANDAS=3.1.1

BIN="${ASDSWEEP_BIN:-target/debug/asdsweep}"
VENV="${ASDSWEEP_PY_VENV:-target/venv-py-client}"
[ -x "$BIN" ] || die "no asdsweep binary at $BIN: build it (cargo build) or set ASDSWEEP_BIN"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
command -v python3 >/dev/null || die "needs python3 (3.11 or newer, for pandas $PANDAS)"

# --- 1. the venv -------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || die "cannot create a venv at $VENV (on Debian: apt-get install python3-venv)"
fi
PY="$(cd "$VENV" && pwd)/bin/python"
want="grpcio==$GRPCIO grpcio-tools==$GRPCIO_TOOLS protobuf==$PROTOBUF pandas==$PANDAS"
# shellcheck disable=SC2086 # $want is a list of requirements
if ! "$PY" - $want <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (r.split("==") for r in sys.argv[1:])))
PY
  say "installing $want into $VENV"
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet --disable-pip-version-check $want || die "cannot install $want from PyPI"
fi

# --- 2. the committed stubs are what generate.sh makes -------------------------------------
work="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PYTHON="$PY" clients/python/generate.sh "$work/gen" >/dev/null
if ! diff -r -q -x '__init__.py' -x '__pycache__' "$work/gen" clients/python/asdsweep_client/v1 >"$work/stubs.diff"; then
  cat "$work/stubs.diff" >&2
  die "the committed stubs in clients/python/asdsweep_client/v1 differ from what proto/ generates: run PYTHON=$PY clients/python/generate.sh and commit"
fi
say "stubs match proto/"

# --- 3. offline tests (test_tls.py: TLS, mutual TLS and tokens against a Python server) ---
GRPC_VERBOSITY=ERROR "$PY" -m unittest discover -s clients/python/tests -p 'test_frame.py'
GRPC_VERBOSITY=ERROR "$PY" -m unittest discover -s clients/python/tests -p 'test_tls.py'

# --- 4. a live coordinator and two workers -----------------------------------------------
port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
addr="127.0.0.1:$port"
export RUST_LOG="${RUST_LOG:-warn}"
# The token through the environment, not argv (ps shows argv).
ASDSWEEP_TOKEN="$token" "$BIN" serve --listen "$addr" --db "sqlite://$work/asdsweep.db?mode=rwc" \
  --artifacts "$work/artifacts" >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if ASDSWEEP_TOKEN="$token" "$BIN" status --coordinator "$addr" >/dev/null 2>&1; then
    break
  fi
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/serve.log" >&2; die "asdsweep serve exited"; }
  sleep 0.2
done
ASDSWEEP_TOKEN="$token" "$BIN" status --coordinator "$addr" >/dev/null \
  || { cat "$work/serve.log" >&2; die "asdsweep serve did not answer on $addr within 20 s"; }
for name in py-a py-b; do
  ASDSWEEP_TOKEN="$token" "$BIN" worker --coordinator "$addr" --name "$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
done
say "coordinator on $addr (pid ${pids[0]}), workers ${pids[*]:1}"

if ! ASDSWEEP_TEST_COORDINATOR="$addr" ASDSWEEP_TOKEN="$token" \
    "$PY" -m unittest discover -v -s clients/python/tests -p 'test_live.py'; then
  for f in "$work"/*.log; do
    say "--- $(basename "$f")"
    tail -n 30 "$f" >&2
  done
  die "the live test failed"
fi
# The example, as a user would run it (it prints the DataFrame).
ASDSWEEP_TOKEN="$token" "$PY" clients/python/examples/launch_and_read.py "$root/sweeps/noop-demo.toml" \
  --coordinator "$addr" --timeout-s 120 >"$work/example.out" \
  || die "examples/launch_and_read.py failed"
grep -q 'succeeded' "$work/example.out" || { cat "$work/example.out" >&2; die "the example printed no succeeded rows"; }
say "example printed $(($(wc -l <"$work/example.out") - 1)) rows; all passed"
