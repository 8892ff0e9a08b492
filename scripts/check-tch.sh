#!/usr/bin/env bash
# Builds the worker with `--features tch` (libtorch through burn-tch) against PyTorch 2.9.0
# from a throw-away venv, and runs the model families' tests (autoencoder, ResNet, ArcFace,
# classifier, PyTorch parity) on CPU libtorch.
#
# Not part of .ci/run: PyPI's Linux torch wheel is a CUDA build that pulls ~3.8 GB of
# nvidia-* wheels (needed even on a CPU-only machine), and the libtorch bindings compile slowly.
#
# Usage: scripts/check-tch.sh            # a fresh venv under a temporary directory
#        VENV=/path/venv scripts/check-tch.sh   # reuse (or create) that venv
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-$(mktemp -d)/venv-torch}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.9.0")' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet torch==2.9.0
fi
TORCH_LIB="$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"

# torch-sys finds libtorch through the venv's python (VIRTUAL_ENV makes it call `python`);
# the test binary needs torch/lib at run time.
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" LIBTORCH_USE_PYTORCH=1
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ASDSWEEP_TEST_DEVICE=libtorch

echo "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') from $TORCH_LIB"
cargo test -p asdsweep-worker --features tch --lib families -- --test-threads=1
