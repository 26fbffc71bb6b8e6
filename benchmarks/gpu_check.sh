#!/usr/bin/env bash
# GPU path end to end (needs CUDA; CI never runs it): the step-level checks of gpu_check.py, then
# `clipsweep train` on 1 GPU in fp32, bf16 and fp16 (Ray Train picks the NCCL backend and
# resources_per_worker={"GPU": 1} itself when the cluster has a GPU), then a 2-trial sweep on
# that GPU. Prints samples/s per precision and the sweep's trial table.
#
#     bash benchmarks/gpu_check.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
python benchmarks/gpu_check.py

for precision in fp32 bf16 fp16; do
  cat > "$work/$precision.yaml" <<YAML
trial:
  model: {image_tower: resnet18, text_tower: tiny_bert}
  optim: {epochs: $epochs, batch_size: 512, precision: $precision}
YAML
  clipsweep train "$work/$precision.yaml" --workers 1 --storage "$work/runs" | tee "$work/$precision.log"
done
printf '\n%-10s %s\n' precision "samples/s (median epoch after the first)"
for precision in fp32 bf16 fp16; do
  rates=$(grep -o '[0-9]* samples/s' "$work/$precision.log" | cut -d' ' -f1 | tail -n +2 | sort -n)
  printf '%-10s %s\n' "$precision" "$(echo "$rates" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done

cat > "$work/sweep.yaml" <<YAML
name: gpu-check
trial:
  model: {image_tower: resnet18, text_tower: tiny_bert}
  optim: {epochs: $epochs, batch_size: 512}
search_space:
  objective:
    logit_transform: {type: choice, values: [identity, sine]}
search: {num_samples: 2, max_concurrent: 1}
resources: {workers_per_trial: 1, cpus_per_worker: 4, gpus_per_worker: 1, driver_cpus: 1}
leaderboard: {finalists: 1}
storage_path: $work/sweeps
mlflow: {tracking_uri: "sqlite:///$work/mlruns.db"}
YAML
clipsweep run "$work/sweep.yaml"
