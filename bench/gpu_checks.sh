#!/usr/bin/env bash
# The GPU checks, in one run on a CUDA machine (results under $OUT, default runs/gpu): the environment,
# the CUDA tests, per-module and full-step latency of every GPU backend, and the fleet stages' training
# throughput with and without mixed precision. Expects an exported artifact in runs/export
# (`drivestack export --out runs/export`) and the project importable (PYTHONPATH=. is set here).
set -uo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, onnx; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'onnx', onnx.__version__)" | tee -a "$OUT/gpu.txt"
$PY -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" | tee -a "$OUT/gpu.txt"
$PY -c "import tensorrt as t; print('tensorrt', t.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -rs -p no:cacheprovider tests/deploy tests/stack/test_stack.py tests/sim/test_step.py 2>&1 | tail -40 | tee "$OUT/tests.txt"
$PY bench/latency.py --device cuda --artifact runs/export --repeats 100 \
    --backends torch torch-cudagraph onnxruntime-cuda onnxruntime-tensorrt tensorrt tensorrt-fp16 \
    --out "$OUT/latency_cuda.json" 2>&1 | grep -v Warning | tee "$OUT/latency_cuda.txt"
$PY bench/latency.py --device cuda --artifact runs/export --repeats 100 --graphs stack_step \
    --backends torch-compile torch-compile-cudagraph \
    --out "$OUT/latency_cuda_compile.json" 2>&1 | grep -v Warning | tee "$OUT/latency_cuda_compile.txt"
# Fleet retraining: samples per second of every stage from drive logs, float32 against mixed precision
# (needs mcap and zstandard, which the lent GPU image lacks: install them, or put their wheels on PYTHONPATH).
$PY bench/fleet_throughput.py --device cuda --drives 2 --steps 20 --global-batch 16 \
    --out "$OUT/fleet_throughput_cuda.json" 2>&1 | tee "$OUT/fleet_throughput_cuda.txt"
# Issue 18: the batched simulator's agent-steps/s at large batches, the Gymnasium interface's overhead and
# reading drive logs as the perception jobs read them, on the GPU machine.
$PY bench/sim_throughput.py --device cuda --batches 1024 4096 16384 --steps 20 \
    --out "$OUT/sim_throughput_cuda.json" 2>&1 | tee "$OUT/sim_throughput_cuda.txt"
$PY bench/gym_overhead.py --device cuda --batches 1 64 1024 4096 --steps 60 20 12 12 \
    --out "$OUT/gym_overhead_cuda.json" 2>&1 | tee "$OUT/gym_overhead_cuda.txt"
$PY bench/log_reading.py --drives 16 --every 5 --stored-half \
    --out "$OUT/log_reading_jobs.json" 2>&1 | tee "$OUT/log_reading_jobs.txt"
$PY bench/log_reading.py --drives 16 --every 5 --stored-half --workers 8 \
    --out "$OUT/log_reading_jobs_w8.json" 2>&1 | tee "$OUT/log_reading_jobs_w8.txt"
