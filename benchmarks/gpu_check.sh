#!/usr/bin/env bash
# GPU check: build the extension (CPU + CUDA), run the `cuda` tests, the ops benchmark and (when
# benchmarks/run.py offers it) the train suite; results go to OUTDIR. Meant for a machine with an
# NVIDIA GPU, in under 6 minutes:  benchmarks/gpu_check.sh OUTDIR
# Python: $PYTHON, else .venv/bin/python, else python3. Each step has its own timeout; a failing step is
# recorded in OUTDIR/summary.txt and the script goes on (exit code = number of failed steps).
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-}
[ -z "$PY" ] && { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
failed=0
step() {  # step NAME TIMEOUT CMD...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: rc=$rc $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
: > "$OUT/summary.txt"
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
step build 300 "$PY" -c "
import json, time
t = time.time()
from jointvae_fast import ops
info = ops.backend_info(); info['import_seconds'] = time.time() - t
print(json.dumps(info, default=str, indent=1))
open('$OUT/backend.json', 'w').write(json.dumps(info, default=str, indent=1))
assert info['backend'] == 'cuda+cpu', info
"
step pytest_cuda 200 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/
step ops_benchmark 150 "$PY" benchmarks/ops_suite.py --json "$OUT/ops.json"
if [ -f benchmarks/run.py ] && grep -q -- "--suite" benchmarks/run.py && grep -q "train" benchmarks/run.py; then
  step train_benchmark 150 "$PY" benchmarks/run.py --suite train --device cuda --json "$OUT/train.json"
fi
echo "total: $(( $(date +%s) - start ))s, failed steps: $failed" | tee -a "$OUT/summary.txt"
exit $failed
