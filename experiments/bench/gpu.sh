#!/usr/bin/env bash
# The speed benchmarks on a GPU machine: jaxvision and its peers side by side, each script
# in its own process, its output also written to OUT_DIR/<name>.txt.
#
# Usage (repository root, jaxvision's dependencies and the peers installed):
#   bash experiments/bench/gpu.sh [OUT_DIR] [NAME ...]
# NAME picks some of: matching boxes segmentation detr_step detr_step_large detr_loss
# pose_step pose (default: all). Issue 19's GPU goals, all in one go with the peers: NMS on
# 20k boxes <= 2 ms with torchvision's indices (boxes), the 16 x 512 x 1024 x 19 confusion
# matrix <= 0.1 ms (segmentation), the DETR-R50 step at 4 x 800 x 1066 in fp32 and bf16 >= 4x
# HF (detr_step_large), plus the 16 x 512 x 512 step and the matcher. Issue 14's: the
# pose_resnet50 train step in images/s (pose_step; CPU dry run: pose_step.py --preset gpu
# --batch 1 --iters 1) and the OKS / heatmap-decode benchmark on the device (pose).
set -u
out=${1:-bench_gpu_out}
shift || true
names=${*:-boxes segmentation detr_step_large detr_step matching detr_loss pose_step pose}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX and torch share the GPU in one process: keep JAX's preallocation below half of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
date -u +%FT%TZ | tee -a "$out/gpu.txt"

run() {  # name, time limit in seconds, script arguments
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$py" "$@" 2>&1 | tee "$out/$name.txt"
}
for name in $names; do
  case $name in
    matching) run matching 200 experiments/bench/matching.py --repeats 50 ;;
    boxes) run boxes 120 experiments/bench/boxes.py ;;
    segmentation) run segmentation 120 experiments/bench/segmentation.py ;;
    detr_step) run detr_step 300 experiments/bench/detr_step.py --preset gpu --shape 16x512x512 ;;
    detr_step_large)
      run detr_step_large 420 experiments/bench/detr_step.py --preset gpu --shape 4x800x1066 ;;
    detr_loss) run detr_loss 120 experiments/bench/detr_loss.py ;;
    pose_step) run pose_step 300 experiments/bench/pose_step.py --preset gpu ;;
    pose) run pose 300 experiments/bench/pose.py --repeats 11 ;;
    *) echo "unknown benchmark: $name" >&2 ;;
  esac
done
