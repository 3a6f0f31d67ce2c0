#!/usr/bin/env bash
# The paper's protocol (Zhao et al. 2024, section 4.1) on the Bijie set, sized for <= 10 minutes of one GPU:
# improved DeepLabV3+ and DeepLabV3+ on ResNet50, 256 px crops, batch 8, Adam lr 1e-4 constant, IoU loss,
# 100 epochs, bf16 autocast + channels_last, then Table 5 (lsmap benchmark) for the two models.
#
#   benchmarks/gpu_reproduce.sh                                  # from scratch (no ImageNet weights)
#   WEIGHTS=/path/resnet50-11ad3fa6.pth benchmarks/gpu_reproduce.sh   # ImageNet-initialised encoders
#
# Settings (environment variables, defaults = the paper's protocol on a GPU):
#   PYTHON=.venv/bin/python  DATA=../shared/data/bijie (images/, masks/, splits/)  OUT=results/gpu_reproduce
#   WEIGHTS=  (a local torchvision ResNet50 state dict; nothing is downloaded)  DEVICE=cuda
#   EPOCHS=100 BACKBONE=resnet50 INPUT_SIZE=256 BATCH=8 LR=1e-4 LOSS=iou STEPS_PER_EPOCH= (empty: one pass)
#   VAL_MAX_CHIPS= (empty: all of Valid) EVAL_BATCH=8 WORKERS=8 SAVE_EVERY=10
#   TRAIN_LIMIT_S=250 per model (a model still training then is stopped; its best.pt so far is
#   benchmarked and the epoch it reached is printed: 2 x 250 s + import + benchmark fit 10 minutes)
# A tiny CPU check of the chain (minutes on 2 cores):
#   DEVICE=cpu EPOCHS=1 STEPS_PER_EPOCH=1 BACKBONE=resnet18 INPUT_SIZE=64 VAL_MAX_CHIPS=2 WORKERS=0 \
#     DATA=<small images/masks/splits folder> benchmarks/gpu_reproduce.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data/bijie}
OUT=${OUT:-results/gpu_reproduce}
WEIGHTS=${WEIGHTS:-}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-100}
BACKBONE=${BACKBONE:-resnet50}
INPUT_SIZE=${INPUT_SIZE:-256}
BATCH=${BATCH:-8}
LR=${LR:-1e-4}
LOSS=${LOSS:-iou}
STEPS_PER_EPOCH=${STEPS_PER_EPOCH:-}
VAL_MAX_CHIPS=${VAL_MAX_CHIPS:-}
EVAL_BATCH=${EVAL_BATCH:-8}
WORKERS=${WORKERS:-8}
SAVE_EVERY=${SAVE_EVERY:-10}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-250}
MODELS=(improved_deeplabv3plus deeplabv3plus)

lsmap() { PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m lsmap.cli "$@"; }
started=$(date +%s)
mkdir -p "$OUT"

if [[ -n "$WEIGHTS" ]]; then
  [[ -f "$WEIGHTS" ]] || { echo "gpu_reproduce: $WEIGHTS: ImageNet weights file not found" >&2; exit 2; }
  PRETRAINED=$WEIGHTS
  echo "encoders: ImageNet weights from $WEIGHTS (as the paper)"
else
  PRETRAINED=none
  echo "encoders: FROM SCRATCH (no WEIGHTS given; the paper starts from ImageNet weights)"
fi
"$PYTHON" - "$DEVICE" <<'EOF'
import sys, torch
device = sys.argv[1]
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit(f"gpu_reproduce: DEVICE={device} but torch sees no CUDA device (DEVICE=cpu for a CPU check)")
    print(f"device: {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}, torch {torch.__version__}")
else:
    print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
EOF

if [[ ! -f "$OUT/dataset/dataset.json" ]]; then
  lsmap dataset import --images "$DATA/images" --masks "$DATA/masks" --splits "$DATA/splits" --out "$OUT/dataset" \
    --gsd-m 0.8 --overwrite > "$OUT/import.json"
fi

optional=()
[[ -n "$STEPS_PER_EPOCH" ]] && optional+=(--steps-per-epoch "$STEPS_PER_EPOCH")
[[ -n "$VAL_MAX_CHIPS" ]] && optional+=(--val-max-chips "$VAL_MAX_CHIPS")
checkpoints=()
for model in "${MODELS[@]}"; do
  t0=$(date +%s)
  set +e
  timeout --signal=INT --kill-after=30 "$TRAIN_LIMIT_S" env PYTHONPATH="$PWD" "$PYTHON" -m lsmap.cli train \
    --dataset "$OUT/dataset" --model "$model" --out "$OUT/train/$model" --backbone "$BACKBONE" \
    --pretrained "$PRETRAINED" --input-size "$INPUT_SIZE" --size-policy crop --batch-size "$BATCH" \
    --epochs "$EPOCHS" --optimizer adam --lr "$LR" --lr-schedule constant --loss "$LOSS" \
    --eval-batch-size "$EVAL_BATCH" --num-workers "$WORKERS" --save-every "$SAVE_EVERY" --device "$DEVICE" \
    --no-progress "${optional[@]}" 2> "$OUT/train_$model.log" > /dev/null
  code=$?
  set -e
  reached=$(tail -n +2 "$OUT/train/$model/history.csv" 2>/dev/null | wc -l)
  if [[ $code -eq 0 ]]; then
    echo "$model: trained $reached/$EPOCHS epochs in $(( $(date +%s) - t0 )) s"
  elif [[ $code -eq 124 || $code -eq 130 ]] && [[ -f "$OUT/train/$model/best.pt" ]]; then
    echo "$model: STOPPED by TRAIN_LIMIT_S=$TRAIN_LIMIT_S after $reached/$EPOCHS epochs (benchmarking its best.pt so far)"
  else
    echo "gpu_reproduce: training $model failed (exit $code): $(tail -n 1 "$OUT/train_$model.log")" >&2
    exit 2
  fi
  checkpoints+=(--checkpoint "$model=$OUT/train/$model/best.pt")
done

lsmap benchmark --dataset "$OUT/dataset" "${checkpoints[@]}" --out "$OUT/benchmark" --device "$DEVICE" \
  2> "$OUT/benchmark.log"
echo "encoders: $([[ $PRETRAINED == none ]] && echo 'from scratch' || echo "ImageNet ($PRETRAINED)"); total $(( $(date +%s) - started )) s"
echo "table: $OUT/benchmark/table5.md"
