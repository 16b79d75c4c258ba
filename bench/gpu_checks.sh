#!/usr/bin/env bash
# The GPU checks of the fused top-k kernel and the torch backend, in one run, on a machine with an NVIDIA GPU,
# PyTorch with CUDA and Triton. Results go to OUT (JSON, and every step's output in log.txt); each step is
# bounded and runs even if an earlier one failed.
#
#   bash bench/gpu_checks.sh OUT KODAK [WHEELS]
#
# KODAK: a folder of Kodak images (a few are enough); WHEELS: wheels of licrt's dependencies the machine lacks.
set -uo pipefail
out=$1 kodak=$2 wheels=${3:-}
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
step() { local seconds=$1 name=$2; shift 2; echo "== $name" | tee -a "$out/log.txt"
         timeout "$seconds" "$@" 2>&1 | tee -a "$out/log.txt"; }

step 10 gpu nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if [ -n "$wheels" ]; then step 60 wheels python3 -m pip install -q --no-deps --no-index "$wheels"/*.whl; fi
step 60 install python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .
step 200 topk-kernel python3 bench/topk_kernel.py --out "$out/topk-kernel.json"
step 60 export python3 -m licrt.export.cli entroformer --checkpoint models/entroformer-small/q2.pt --shape 512x768 \
    --out scratch/gpu/entroformer-small-512x768
step 90 stage-times python3 bench/stage_times.py "$kodak" --count 2 --bundle scratch/gpu/entroformer-small-512x768 \
    --backend torch --decode-with onnxruntime \
    --out "$out/stage-times-entroformer-small.json"
step 120 kernel-tests python3 -m pytest -q -p no:cacheprovider -n 8 tests/plugins/test_triton_kernel.py
step 100 cross-backend python3 bench/cross_backend.py "$kodak" --backends onnxruntime,torch,torch-tf32 \
    --guard on --fault-epsilons "" --out "$out/cross-backend-default.json"
