#!/usr/bin/env bash
# The GPU check of issue 15, one prepared run (under 8 minutes on one H100/H200):
#   1. the CUDA tests (device engine == CPU map; every visible GPU == one GPU, with 2+ GPUs);
#   2. the zero-cost-model feed on the GPU at 16,384² (lsmap after only: no TorchGeo there);
#   3. the improved DeepLabV3+/ResNet50 in bf16 at batch 8 and 32: blended inference against the
#      pure forward, peak GPU memory, and the implied time for the 21,547 km² region.
#
# The GPU machine has no rasterio and no package index: fetch its wheels here once (Python 3.12,
# the GPU image's; 36 MB; its other needs, numpy, attrs, certifi, click, pyparsing, torch, tqdm, are there):
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl rasterio==1.4.4 affine==3.0.1 cligj==0.7.2 click-plugins==1.1.1.2
# .whl/ is git-ignored, so it travels only when named: the device tool's run with carry [".whl"] and
# command "bash benchmarks/gpu_check.sh" (results under $OUT: gpu.txt, tests.log, bench_feed.log).
# CPU-only parts run anywhere:  LSMAP_GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh   (device cpu, small sizes)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-/tmp/lsmap-gpu-check}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c "import rasterio" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lsmap-site .whl/*.whl || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/lsmap-site"
  else
    echo "gpu_check: rasterio is missing and no wheels in .whl/ (see the header of this script)"; exit 2
  fi
fi
if [ "${LSMAP_GPU_CHECK_CPU:-0}" = 1 ]; then
  DEVICE=cpu; FEED_SIZE=2048; REAL_SIZE=1024; BATCHES="4"; REPEATS=1; TESTS="device_side or uint16 or cuda"
else
  DEVICE=cuda; FEED_SIZE=16384; REAL_SIZE=8192; BATCHES="8 32"; REPEATS=3; TESTS="cuda or gpu"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count(), 'GPU(s)')"
echo "== 1. tests ($TESTS)"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_predict.py tests/test_device.py -k "$TESTS" -rs 2>&1 \
  | tee "$OUT_DIR/tests.log" | tail -15
echo "== 2-3. feed ${FEED_SIZE}² and real model ${REAL_SIZE}² on $DEVICE"
timeout 360 "$PY" benchmarks/bench_feed.py --device "$DEVICE" --skip-torchgeo --sizes "$FEED_SIZE" \
  --real-size "$REAL_SIZE" --real-batch $BATCHES --real-repeats "$REPEATS" --real-precision bf16 --workdir /tmp/lsmap-feed-scenes 2>&1 \
  | tee "$OUT_DIR/bench_feed.log"
