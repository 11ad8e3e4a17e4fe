#!/usr/bin/env bash
# The install check of .ci/run (README "Install"): build the wheel with the installed torch in the CI's virtual
# environment (the CPU twin, and the CUDA kernels where nvcc is found), install it in a second, fresh virtual
# environment, then, with no compiler, no nvcc and no ninja reachable (tripwire stand-ins that log any call), run
# the doctor, one training step, an evaluation of pretrained:fashion-mnist and an export, and check that nothing
# compiled: no tripwire called, no JIT build folder made, the doctor reporting the prebuilt library.
#   usage: .ci/wheel_check.sh PYTHON_OF_THE_BUILD_VENV   (run from the repository root)
set -euo pipefail
build_python=$1
root=$(pwd)
work=$root/.ci-wheel
rm -rf "$work" build/lib.* build/temp.* build/bdist.*
mkdir -p "$work/dist" "$work/tripwire/bin" "$work/tripwire/include" "$work/run"

echo "-- wheel: build (pip wheel --no-build-isolation)"
"$build_python" -m pip install -q --upgrade "setuptools>=70.1" wheel
"$build_python" -m pip wheel -q --no-build-isolation --no-deps -w "$work/dist" .
wheel=$(ls "$work"/dist/jointvae_fast-*.whl)
"$build_python" - "$wheel" <<'EOF'
import json, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if n.startswith("jointvae_fast/_jointvae_ext") and n.endswith(".so")]
assert len(libs) == 1, f"no compiled library in the wheel: {libs}"
record = json.loads(zipfile.ZipFile(sys.argv[1]).read("jointvae_fast/_jointvae_ext.build.json"))
test_code = [n for n in names if n.startswith("jointvae_fast/_kernels/") and n.split("/")[2] in ("tests", "emulation")]
assert not test_code, f"test C++ in the wheel: {test_code}"
print(f"   {sys.argv[1].rsplit('/', 1)[1]}: {libs[0]}; built for torch {record['torch']}, "
      f"CUDA kernels {record['cuda_kernels']} ({record['cuda_arch_list']})")
EOF

echo "-- wheel: install into a fresh virtual environment, then remove ninja"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel"
"$work/venv/bin/pip" uninstall -q -y ninja

# tripwires: any compiler, nvcc or ninja call is logged and fails (`--version` only answers: the doctor asks nvcc);
# CUDA_HOME names a toolkit made of tripwires, so a CUDA build, if one were tried, would call them
for tool in c++ g++ gcc cc clang clang++ nvcc ninja; do
  cat > "$work/tripwire/bin/$tool" <<TRIPWIRE
#!/bin/sh
if [ "\$1" = "--version" ]; then echo "tripwire $tool, release 0.0"; exit 0; fi
echo "$tool \$*" >> "$work/tripwire.log"
exit 1
TRIPWIRE
  chmod +x "$work/tripwire/bin/$tool"
done
touch "$work/tripwire/include/cuda_runtime_api.h"
cache=$work/ext-cache
clean_env=(env -i HOME="$HOME" LANG=C.UTF-8 PATH="$work/venv/bin:$work/tripwire/bin" CXX="$work/tripwire/bin/c++"
           CUDA_HOME="$work/tripwire" JOINTVAE_FAST_CACHE="$cache" JOINTVAE_DOWNLOAD=0 MPLBACKEND=Agg)
py=$work/venv/bin/python
cd "$work/run"  # outside the checkout: the installed package is the one imported

echo "-- wheel: doctor"
"${clean_env[@]}" "$py" -m jointvae_fast.doctor | tee "$work/doctor.txt"
grep -q "prebuilt" "$work/doctor.txt"

if [ -d /usr/share/datasets/fashion-mnist ]; then
  echo "-- wheel: one training step (fashion-mnist)"
  "${clean_env[@]}" "$py" -m jointvae_fast.train --dataset fashion-mnist --steps 1 --out "$work/run/train" --threads 2
  echo "-- wheel: evaluate pretrained:fashion-mnist (first 500 test images)"
  "${clean_env[@]}" "$py" -m jointvae_fast.evaluate pretrained:fashion-mnist --limit 500 --no-progress \
    --out "$work/run/eval"
else
  echo "-- wheel: one training step (synthetic-chairs; Fashion-MNIST is not installed, so no evaluation of it)"
  "${clean_env[@]}" "$py" -m jointvae_fast.train --dataset synthetic-chairs --steps 1 --out "$work/run/train" --threads 2
fi
echo "-- wheel: export pretrained:fashion-mnist (TorchScript)"
"${clean_env[@]}" "$py" -m jointvae_fast.export pretrained:fashion-mnist "$work/run/export" --format torchscript

echo "-- wheel: nothing compiled?"
if [ -s "$work/tripwire.log" ]; then
  echo "FAIL: a compiler, nvcc or ninja was called:"; cat "$work/tripwire.log"; exit 1
fi
if [ -n "$(ls -A "$cache" 2>/dev/null)" ]; then
  echo "FAIL: a JIT build folder was made: $(ls "$cache")"; exit 1
fi
echo "   no compiler, nvcc or ninja was called; no JIT build folder; the prebuilt library was used"
