#!/usr/bin/env bash
# Regenerates the gRPC stubs of asdsweep_client/v1/ from proto/asdsweep/v1/*.proto with
# grpcio-tools (pinned in pyproject.toml's [project.optional-dependencies] dev), then makes
# their imports relative: protoc writes `from asdsweep.v1 import common_pb2`, a package
# this project does not have; `from . import common_pb2` finds the module beside it.
#
# Usage: clients/python/generate.sh [OUT_DIR]   # default clients/python/asdsweep_client/v1
#        PYTHON=/path/venv/bin/python clients/python/generate.sh   # a python with grpc_tools
# scripts/test-python-client.sh regenerates into a temporary directory and fails if the
# result differs from the committed files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
out="${1:-$here/asdsweep_client/v1}"
python="${PYTHON:-python3}"
case "$python" in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac  # we cd below

"$python" -c 'import grpc_tools' 2>/dev/null \
  || { echo "generate.sh: $python has no grpc_tools (pip install grpcio-tools, version in clients/python/pyproject.toml)" >&2; exit 1; }
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Relative file names (asdsweep/v1/x.proto), so that the descriptors carry the same names as
# the Rust side's and the output does not depend on where the checkout lives.
(cd "$proto" && "$python" -m grpc_tools.protoc -I . \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" asdsweep/v1/*.proto)

for f in "$tmp"/asdsweep/v1/*.py "$tmp"/asdsweep/v1/*.pyi; do
  sed -e 's/^from asdsweep\.v1 import /from . import /' "$f" >"$out/$(basename "$f")"
done
# Nothing may still import the absolute package.
if grep -l '^from asdsweep\.\|^import asdsweep\.' "$out"/*_pb2*.py "$out"/*_pb2*.pyi; then
  echo "generate.sh: the files above still import asdsweep.v1 absolutely" >&2
  exit 1
fi
