#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: creates the slice (or reuses it when it
# exists), puts this checkout on every worker, installs it there with
# `pip install -e ".[tpu]"` and starts the run on all workers at once.
#
#   launch/tpu_vm.sh --name=jaxgen-v4-16 --accelerator=v4-16 \
#       --zone=us-central2-b configs/gan.py:demo gs://BUCKET/runs/gan \
#       [--config.field=value ...]
#
# runs, from ~/jaxgen on every worker (gcloud ... ssh --worker=all),
#
#   python3 -m jaxgen.main --config=configs/gan.py:demo \
#       --workdir=gs://BUCKET/runs/gan [--config.field=value ...]
#
# JAX finds the slice's workers by itself (no coordinator flags). WORKDIR must
# be a gs:// path that every worker can write: it is the one place where the
# workers write their checkpoints together and where process 0 writes logs
# and samples. Re-running the same command reuses the slice and resumes from
# the newest checkpoint there. data.root must be readable on every worker
# (the :demo variants need no files).
#
# Options (each also read from the environment variable in brackets):
#   --name=NAME            TPU VM name [TPU_NAME] (default: jaxgen)
#   --zone=ZONE            [TPU_ZONE] (default: us-central2-b)
#   --accelerator=TYPE     accelerator type [TPU_ACCELERATOR] (default: v4-8),
#                          e.g. v4-32, v5litepod-16, v6e-8
#   --version=VERSION      TPU software version [TPU_RUNTIME_VERSION]
#                          (default: tpu-ubuntu2204-base; v5e:
#                          v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5,
#                          v6e: v2-alpha-tpuv6e)
#   --project=PROJECT      [TPU_PROJECT] (default: gcloud's project)
#   --spot                 create a Spot VM
#   --repo=URL [--ref=REF] git-clone URL (at REF) on the workers instead of
#                          copying this checkout (tracked and untracked,
#                          non-ignored files)
#   --skip_setup           neither copy nor install (workers already set up)
#   --delete               delete the TPU VM when the run ends, however it ends
set -euo pipefail

usage() {
  echo "usage: $0 [--name=NAME] [--zone=ZONE] [--accelerator=TYPE]" \
    "[--version=VERSION] [--project=PROJECT] [--spot] [--repo=URL [--ref=REF]]" \
    "[--skip_setup] [--delete] CONFIG[:variant] gs://BUCKET/WORKDIR" \
    "[--config.field=value ...]" >&2
}

die_usage() {
  echo "$0: error: $1" >&2
  usage
  exit 2
}

name=${TPU_NAME:-jaxgen}
zone=${TPU_ZONE:-us-central2-b}
accelerator=${TPU_ACCELERATOR:-v4-8}
version=${TPU_RUNTIME_VERSION:-tpu-ubuntu2204-base}
project=${TPU_PROJECT:-}
spot=0
repo=""
ref=HEAD
skip_setup=0
delete=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --accelerator=*) accelerator=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --repo=*) repo=${1#*=} ;;
    --ref=*) ref=${1#*=} ;;
    --spot) spot=1 ;;
    --skip_setup) skip_setup=1 ;;
    --delete) delete=1 ;;
    --) shift; break ;;
    -*) die_usage "unknown option $1 (options take --opt=value and come before CONFIG)" ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 2 ] || die_usage "CONFIG and WORKDIR are required"
config=$1
workdir=$2
shift 2
case "$workdir" in
  gs://?*) ;;
  *) die_usage "WORKDIR must be a gs:// path shared by all workers, got '$workdir'" ;;
esac
for value in "$name" "$zone" "$accelerator" "$version"; do
  [ -n "$value" ] || die_usage "--name, --zone, --accelerator and --version must not be empty"
done
command -v gcloud >/dev/null 2>&1 || {
  echo "$0: error: gcloud not found; install the Google Cloud CLI" \
    "(https://cloud.google.com/sdk/docs/install)" >&2
  exit 1
}

where=(--zone="$zone")
[ -z "$project" ] || where+=(--project="$project")

tpu() {
  gcloud compute tpus tpu-vm "$@"
}

on_all_workers() {
  tpu ssh "$name" "${where[@]}" --worker=all --command="$1"
}

# 1. The slice.
if state=$(tpu describe "$name" "${where[@]}" --format='value(state)' 2>/dev/null); then
  echo "$0: reusing TPU VM $name in $zone (state $state)" >&2
  if [ "$state" != READY ]; then
    echo "$0: error: TPU VM $name is $state, not READY; start it with" \
      "'gcloud compute tpus tpu-vm start $name --zone=$zone' or delete it" >&2
    exit 1
  fi
else
  echo "$0: creating TPU VM $name ($accelerator, $version) in $zone" >&2
  create=(--accelerator-type="$accelerator" --version="$version")
  [ "$spot" -eq 0 ] || create+=(--spot)
  tpu create "$name" "${where[@]}" "${create[@]}"
fi

if [ "$delete" -eq 1 ]; then
  trap 'echo "$0: deleting TPU VM $name" >&2; tpu delete "$name" "${where[@]}" --quiet' EXIT
fi

# 2. The code and its dependencies on every worker (in ~/jaxgen).
if [ "$skip_setup" -eq 0 ]; then
  if [ -n "$repo" ]; then
    q_repo=$(printf '%q' "$repo")
    q_ref=$(printf '%q' "$ref")
    on_all_workers "set -e; if [ -d jaxgen/.git ]; then
      git -C jaxgen fetch -q $q_repo $q_ref;
      git -C jaxgen checkout -q FETCH_HEAD;
    else git clone -q $q_repo jaxgen; git -C jaxgen checkout -q $q_ref; fi"
  else
    root=$(cd "$(dirname "$0")/.." && pwd)
    git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 || {
      echo "$0: error: $root is not a git checkout; use --repo=URL" >&2
      exit 1
    }
    tmp=$(mktemp -d)
    archive=$tmp/jaxgen.tar.gz
    (
      cd "$root"
      git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
        if [ -e "$f" ]; then printf '%s\0' "$f"; fi
      done | tar --null -T - -czf "$archive"
    )
    tpu scp "$archive" "$name:jaxgen.tar.gz" "${where[@]}" --worker=all
    rm -rf "$tmp"
    on_all_workers "set -e; mkdir -p jaxgen && tar -xzf jaxgen.tar.gz -C jaxgen"
  fi
  on_all_workers "set -e; cd jaxgen; python3 -m pip install -q --upgrade pip;
    python3 -m pip install -q -e '.[tpu]'"
fi

# 3. The run, on all workers together.
run=(python3 -m jaxgen.main --config="$config" --workdir="$workdir" "$@")
printf -v remote '%q ' "${run[@]}"
echo "$0: running on all workers of $name: ${run[*]}" >&2
on_all_workers "cd jaxgen && $remote"
