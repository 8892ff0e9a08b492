#!/usr/bin/env bash
# The orchestrator walkthrough on the diagnostic noop sweep: a coordinator on
# SQLite, two workers, a launch, then status and results. Everything lives in
# a temporary directory and stops when the script ends.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${ASDSWEEP_BIN:-$root/target/release/asdsweep}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work="$(mktemp -d)"
port="${ASDSWEEP_DEMO_PORT:-7070}"
export ASDSWEEP_COORDINATOR="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-warn}"
cleanup() { kill "$serve_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin" serve --listen "127.0.0.1:$port" --db "sqlite://$work/asdsweep.db?mode=rwc" --artifacts "$work/artifacts" &
serve_pid=$!
until "$bin" status >/dev/null 2>&1; do sleep 0.2; done

"$bin" launch "$root/sweeps/noop-demo.toml" --dry-run | tail -n 1
"$bin" launch "$root/sweeps/noop-demo.toml"
"$bin" worker --name demo-a --exit-when-idle-s 1 &
"$bin" worker --name demo-b --exit-when-idle-s 1 &
wait %2 %3
"$bin" status noop-demo
"$bin" results noop-demo
