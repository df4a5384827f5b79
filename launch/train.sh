#!/usr/bin/env bash
# Launches a training run with its log next to the outputs.
#
#   launch/train.sh configs/cgan.py runs/cgan --config.data.root=DATA
#   launch/train.sh configs/vae.py:demo runs/vae
#
# On a multi-GPU host every local GPU is used (data parallel on the "data"
# mesh axis); restrict with CUDA_VISIBLE_DEVICES. Re-running the same command
# resumes from the newest checkpoint in the workdir.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG[:variant] WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
config=$1; workdir=$2; shift 2
mkdir -p "$workdir"
python -m jaxgen.main --config="$config" --workdir="$workdir" "$@" \
  2>&1 | tee -a "$workdir/train.log"
