#!/usr/bin/env bash
# GPU check, one run on a machine with an NVIDIA GPU (about 8 minutes at most):
#   benchmarks/gpu_check.sh OUTDIR
# 1. build the extension (CPU + CUDA) and record backend.json;
# 2. pytest -m cuda (every test needing the GPU: the fused ops on CUDA, tc_pairwise with its CUDA graph and
#    opcheck, the captured training step with and without the total-correlation term), then, as its own step
#    so it cannot eat the GPU tests' time, pytest -m emulated_cuda (the kernels run on the CPU; CI runs them too);
# 3. the ops suite (--quick) and the train suite on CUDA (JSON: img/s, and the step mode, graph or eager);
# 4. compute-sanitizer (if found): --tool memcheck over the cuda tests (less the profiler one: CUPTI and the
#    sanitizer do not attach together), --tool racecheck over the KL tests (the kernels with shared memory;
#    tc_pairwise's use none), hypothesis at a few examples per test (HYPOTHESIS_PROFILE=quick, where a test
#    does not set its own max_examples).
# Not here: benchmarks/tc_suite.py (run.py --suite tc) times tc_pairwise on the CPU only, and the ops suite
# times sample_latent + kl_capacity_loss; no suite times tc_pairwise or the aggregate ops on CUDA yet.
# Everything goes to OUTDIR: one NAME.txt log per step, summary.txt (rc and seconds per step), JSON results.
# Python: $PYTHON, else .venv/bin/python, else python3. Each step has its own timeout, and no step runs past
# the total budget ($GPU_CHECK_BUDGET_S, default 480 s): a step left without time is recorded as skipped.
# A failing step is recorded and the script goes on; exit code = number of failed steps.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-}
[ -z "$PY" ] && { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BUDGET=${GPU_CHECK_BUDGET_S:-480}
start=$(date +%s)
failed=0
step() {  # step NAME TIMEOUT CMD...   (the timeout is cut to what is left of the budget)
  local name=$1 limit=$2; shift 2
  local t0 left rc
  t0=$(date +%s)
  left=$(( BUDGET - (t0 - start) ))
  if [ "$left" -lt 20 ]; then
    echo "$name: skipped (budget of ${BUDGET}s spent)" | tee -a "$OUT/summary.txt"
    failed=$((failed + 1))
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  rc=$?
  echo "$name: rc=$rc $(( $(date +%s) - t0 ))s (limit ${limit}s)" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
: > "$OUT/summary.txt"
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
step build 240 "$PY" -c "
import json, time
t = time.time()
from jointvae_fast import ops
info = ops.backend_info(); info['import_seconds'] = time.time() - t
print(json.dumps(info, default=str, indent=1))
open('$OUT/backend.json', 'w').write(json.dumps(info, default=str, indent=1))
assert info['backend'] == 'cuda+cpu', info
"
step pytest_cuda 180 "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider --junitxml="$OUT/pytest_cuda.xml" tests/
step pytest_emulated 90 "$PY" -m pytest -m emulated_cuda -q -rs -p no:cacheprovider \
  --junitxml="$OUT/pytest_emulated.xml" tests/
step ops_benchmark 60 "$PY" benchmarks/ops_suite.py --device cuda --quick --json "$OUT/ops.json"
step train_benchmark 150 "$PY" benchmarks/train_suite.py --device cuda --size 32 64 --batch-size 64 256 \
  --steps 30 --repeats 2 --precision fp32,bf16 --json "$OUT/train.json"
SAN=$(command -v compute-sanitizer || true)
[ -z "$SAN" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/compute-sanitizer" ] && SAN=$CUDA_HOME/bin/compute-sanitizer
if [ -n "$SAN" ]; then
  # the kernels of torch itself are checked too; only ours are expected to be clean, so report all
  export HYPOTHESIS_PROFILE=quick
  step memcheck 150 "$SAN" --tool memcheck --error-exitcode 99 --print-limit 50 \
    "$PY" -m pytest -m cuda -q -x -p no:cacheprovider -k "not launch" tests/ops/test_cuda_gpu.py
  step racecheck 120 "$SAN" --tool racecheck --racecheck-report analysis --error-exitcode 99 --print-limit 50 \
    "$PY" -m pytest -m cuda -q -x -p no:cacheprovider -k "kl" tests/ops/test_cuda_gpu.py
  unset HYPOTHESIS_PROFILE
else
  echo "sanitizers: skipped (compute-sanitizer not found)" | tee -a "$OUT/summary.txt"
fi
echo "total: $(( $(date +%s) - start ))s, failed steps: $failed" | tee -a "$OUT/summary.txt"
exit $failed
