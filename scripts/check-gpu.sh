#!/usr/bin/env bash
# The GPU check of issue 17, for a machine with an NVIDIA GPU (not part of .ci/run, which has
# none). On cuda:0 it runs
#   1. the model families' tests with burn's CUDA backend (worker feature `cuda`),
#   2. the same tests on libtorch's CUDA (worker feature `tch`, PyTorch 2.9.0 from a venv),
#   3. `asdsweep bench train` with each of the two backends, and PyTorch CUDA on the same
#      models (scripts/bench_train_torch.py --device cuda:0),
# and writes what it measured as JSON Lines into OUT_DIR:
#   machine.json        GPU, driver, CUDA, CPU, commit
#   tests.jsonl         one line per backend: passed, failed, seconds, log file
#   bench.jsonl         one line per model and backend, as each benchmark prints it, plus
#                       "run": burn-cuda, burn-tch or pytorch-cuda
#   summary.md          steps/s side by side, for the README
#   *.log               the full output of each step
# Every step runs even if one before it failed; the exit status says whether all passed.
#
# Usage: scripts/check-gpu.sh OUT_DIR
# Environment:
#   VENV          venv with torch==2.9.0 (created if missing; default target/venv-torch-gpu;
#                 PyPI's Linux torch wheel is the CUDA 12.8 build, ~900 MB plus ~3.8 GB of
#                 nvidia-* wheels)
#   MODELS        models to time (default "ae resnet18 separator simclr")
#   BENCH_REPEATS timed runs per model (default 3)
#
# The two cargo builds (release binary and test binaries, each backend) take their own
# target directories, target/gpu-cuda and target/gpu-tch, so neither rebuilds the other.
# The `cuda` build downloads cubecl's LLVM bundle from GitHub on first build
# (tracel-llvm-bundler, into ~/.local/share/tracel/), and needs the CUDA toolkit's nvcc on
# PATH to target the installed CUDA (without it cudarc assumes the newest).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

say() { echo "check-gpu: $*" >&2; }
die() { say "$*"; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/check-gpu.sh OUT_DIR (where the JSON Lines and logs go)"
OUT="$1"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
VENV="${VENV:-target/venv-torch-gpu}"
MODELS="${MODELS:-ae resnet18 separator simclr}"
BENCH_REPEATS="${BENCH_REPEATS:-3}"

command -v nvidia-smi >/dev/null \
  || die "needs an NVIDIA GPU and its driver: nvidia-smi is not on PATH (this script is for a GPU machine; see deploy/README.md)"
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i 0 2>&1)" \
  || die "nvidia-smi finds no usable GPU: $GPU"
[ -n "$GPU" ] || die "nvidia-smi lists no GPU"
command -v cargo >/dev/null || die "needs cargo (rustup.rs) to build the cuda and tch features"
command -v python3 >/dev/null || die "needs python3 for PyTorch"
command -v nvcc >/dev/null || say "warning: no nvcc on PATH: the cuda build cannot read the CUDA version and targets the newest cudarc knows"

failures=()
fail() { failures+=("$1"); say "FAILED: $1"; }

# JSON Lines on stdin, each tagged with "run": $1 (which backend made it), to bench.jsonl.
tag_runs() {
  python3 -c 'import json, sys
for line in sys.stdin:
    if line.strip():
        print(json.dumps({**json.loads(line), "run": sys.argv[1]}), flush=True)' "$1" >>"$OUT/bench.jsonl"
}

# --- the machine -------------------------------------------------------------------------
python3 - "$OUT/machine.json" "$GPU" <<'PY'
import json, platform, subprocess, sys
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
name, driver, memory = [p.strip() for p in sys.argv[2].split(",")]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
nvcc = run("nvcc", "--version")
json.dump({
    "gpu": name, "driver": driver, "gpu_memory": memory,
    "gpus": len((run("nvidia-smi", "-L") or "").splitlines()),
    "nvcc": nvcc.splitlines()[-1] if nvcc else None,
    "cpu": cpu, "kernel": platform.release(),
    "commit": run("git", "rev-parse", "HEAD"),
    "dirty": bool(run("git", "status", "--porcelain")),
}, open(sys.argv[1], "w"))
PY
say "GPU 0: $GPU"

# --- PyTorch 2.9.0 (libtorch for the tch build, and the PyTorch side of the benchmark) ----
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || die "cannot create a venv at $VENV"
fi
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.9.0")' 2>/dev/null; then
  say "installing torch==2.9.0 and safetensors==0.8.0 into $VENV (several GB)"
  "$VENV/bin/pip" install --quiet torch==2.9.0 safetensors==0.8.0 || die "cannot install torch==2.9.0 into $VENV"
fi
"$VENV/bin/python" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' \
  || die "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') in $VENV sees no CUDA GPU (driver too old for CUDA 12.8?)"
TORCH_LIB="$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
VENV_ABS="$(cd "$VENV" && pwd)"

# The environment of the tch builds and runs, as scripts/check-tch.sh sets it.
with_torch() {
  VIRTUAL_ENV="$VENV_ABS" PATH="$VENV_ABS/bin:$PATH" LIBTORCH_USE_PYTORCH=1 \
    LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}

# --- 1 and 2: the families' tests on cuda:0 ----------------------------------------------
# ASDSWEEP_TEST_DEVICE=cuda:0 makes the families' tests use the device `--device cuda:0`
# selects in that build (worker/src/families/mod.rs, test_device).
run_tests() { # backend feature
  local backend="$1" feature="$2" log="$OUT/tests-$1.log" start rc
  start=$(date +%s)
  say "families' tests on cuda:0, $backend (log: $log)"
  CARGO_TARGET_DIR="target/gpu-$backend" ASDSWEEP_TEST_DEVICE=cuda:0 \
    "${@:3}" cargo test -p asdsweep-worker --features "$feature" --lib families -- --test-threads=1 >"$log" 2>&1
  rc=$?
  python3 - "$backend" "$rc" "$(($(date +%s) - start))" "$log" >>"$OUT/tests.jsonl" <<'PY'
import json, re, sys
backend, rc, seconds, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
passed = failed = 0
for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", open(log, errors="replace").read()):
    passed += int(m[1]); failed += int(m[2])
print(json.dumps({"check": "families-tests", "backend": backend, "device": "cuda:0", "exit": rc,
                  "passed": passed, "failed": failed, "seconds": seconds, "log": log}))
PY
  [ "$rc" = 0 ] || fail "families' tests on $backend (exit $rc, see $log)"
}
: >"$OUT/tests.jsonl"
run_tests cuda cuda
run_tests tch tch with_torch

# --- 3: training throughput, burn (both backends) next to PyTorch CUDA -------------------
: >"$OUT/bench.jsonl"
bench_steps() { # model -> "STEPS WARMUP" sized for a GPU (the CPU defaults are 100/10 and 3/1)
  case "$1" in
    ae) echo "500 50" ;;
    *) echo "20 3" ;;
  esac
}

bench_burn() { # backend feature [with_torch]
  local backend="$1" feature="$2" bin="target/gpu-$1/release/asdsweep" log="$OUT/bench-burn-$1.log" model steps warmup
  say "building asdsweep with asdsweep-worker/$feature (release; log: $log)"
  if ! CARGO_TARGET_DIR="target/gpu-$backend" "${@:3}" cargo build --release --locked -p asdsweep \
      --features "asdsweep-worker/$feature" >"$log" 2>&1; then
    fail "release build with asdsweep-worker/$feature (see $log)"
    return
  fi
  for model in $MODELS; do
    read -r steps warmup < <(bench_steps "$model")
    say "bench train --model $model on cuda:0, burn-$backend"
    if ! "${@:3}" "$bin" bench train --device cuda:0 --model "$model" --steps "$steps" --warmup "$warmup" \
        --repeats "$BENCH_REPEATS" --json 2>>"$log" | tag_runs "burn-$backend"; then
      fail "bench train --model $model on burn-$backend (see $log)"
    fi
  done
}
bench_burn cuda cuda
bench_burn tch tch with_torch

log="$OUT/bench-pytorch.log"
for model in $MODELS; do
  read -r steps warmup < <(bench_steps "$model")
  say "bench_train_torch.py --model $model --device cuda:0"
  if ! "$VENV/bin/python" scripts/bench_train_torch.py --device cuda:0 --model "$model" --steps "$steps" \
      --warmup "$warmup" --repeats "$BENCH_REPEATS" 2>>"$log" | tag_runs pytorch-cuda; then
    fail "PyTorch CUDA bench of $model (see $log)"
  fi
done

# --- summary ------------------------------------------------------------------------------
python3 - "$OUT" >"$OUT/summary.md" <<'PY'
import json, sys
out = sys.argv[1]
machine = json.load(open(f"{out}/machine.json"))
print(f"GPU check on {machine['gpu']} (driver {machine['driver']}, {machine['gpu_memory']}), "
      f"CPU {machine['cpu']}, commit {machine['commit']}{' (dirty)' if machine['dirty'] else ''}\n")
print("| families' tests on cuda:0 | passed | failed | seconds |\n|---|---|---|---|")
for line in open(f"{out}/tests.jsonl"):
    t = json.loads(line)
    print(f"| {t['backend']} | {t['passed']} | {t['failed']} | {t['seconds']} |")
rows = {}
for line in open(f"{out}/bench.jsonl"):
    r = json.loads(line)
    who = r["run"]
    rows.setdefault(r["model"], {})[who] = r
whos = sorted({w for m in rows.values() for w in m})
print("\n| model (batch) | " + " | ".join(f"{w} steps/s" for w in whos) + " |")
print("|---|" + "---|" * len(whos))
for model, by in rows.items():
    batch = next(iter(by.values())).get("batch")
    cells = [f"{by[w]['steps_per_s']:.2f}" if w in by else "-" for w in whos]
    print(f"| {model} ({batch}) | " + " | ".join(cells) + " |")
PY
cat "$OUT/summary.md"

if [ ${#failures[@]} -gt 0 ]; then
  say "${#failures[@]} step(s) failed:"
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
say "all passed; results in $OUT"
