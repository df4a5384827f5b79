#!/usr/bin/env bash
# Trains on this machine with all its devices (CPU cores, every local GPU):
#
#   launch/local.sh configs/vae.py:demo runs/vae [--config.field=value ...]
#
# runs
#
#   python -m jaxgen.main --config=configs/vae.py:demo --workdir=runs/vae \
#       [--config.field=value ...]
#
# One process already uses every local device (the batch is sharded over them
# on a Mesh); restrict GPUs with CUDA_VISIBLE_DEVICES.
#
# --processes N starts N processes of the same run on this machine, talking to
# each other through a coordinator on 127.0.0.1:PORT, to try multi-process
# training without a cluster. Process i runs
#
#   python -m jaxgen.main --config=CONFIG --workdir=WORKDIR \
#       --coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=i
#
# e.g. two processes with two CPU devices each (cross-process collectives on
# CPU use gloo, set here unless JAX_CPU_COLLECTIVES_IMPLEMENTATION is set):
#
#   JAX_NUM_CPU_DEVICES=2 launch/local.sh --processes 2 \
#       configs/vae.py:demo runs/vae_2proc
#
# This is meant for CPU devices: on a GPU machine every process would see
# every GPU, so use one process there. All processes share WORKDIR (the same
# folder on this machine). Process 0 prints to the terminal; process i > 0
# writes to WORKDIR/process_logs/process_<i>.log. The script waits for all of
# them; when one fails, the others are stopped and the script exits with the
# failing process's status. PYTHON selects the interpreter (default: python).
set -euo pipefail

usage() {
  echo "usage: $0 [--processes N] [--port PORT] CONFIG[:variant] WORKDIR" \
    "[--config.field=value ...]" >&2
}

die_usage() {
  echo "$0: error: $1" >&2
  usage
  exit 2
}

processes=1
port=29500
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --processes) [ $# -ge 2 ] || die_usage "--processes needs a value"
                 processes=$2; shift 2 ;;
    --processes=*) processes=${1#*=}; shift ;;
    --port) [ $# -ge 2 ] || die_usage "--port needs a value"
            port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --) shift; break ;;
    -*) die_usage "unknown option $1 (options come before CONFIG)" ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || die_usage "CONFIG and WORKDIR are required"
case "$processes" in
  ''|*[!0-9]*|0*) die_usage "--processes must be a positive integer, got '$processes'" ;;
esac
case "$port" in
  ''|*[!0-9]*) die_usage "--port must be a number, got '$port'" ;;
esac
config=$1
workdir=$2
shift 2
python=${PYTHON:-python}

if [ "$processes" -eq 1 ]; then
  exec "$python" -m jaxgen.main --config="$config" --workdir="$workdir" "$@"
fi

export JAX_CPU_COLLECTIVES_IMPLEMENTATION=${JAX_CPU_COLLECTIVES_IMPLEMENTATION:-gloo}
logdir=$workdir/process_logs
mkdir -p "$logdir"

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Give them a few seconds to exit, then force it.
  local tries=0
  while [ "$tries" -lt 20 ]; do
    local alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 1 ] || break
    sleep 0.5
    tries=$((tries + 1))
  done
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
# Background jobs of a script ignore Ctrl-C: stop them explicitly.
trap 'echo "$0: interrupted, stopping all processes" >&2; stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

for ((i = 0; i < processes; i++)); do
  cmd=("$python" -m jaxgen.main --config="$config" --workdir="$workdir"
       --coordinator_address="127.0.0.1:$port" --num_processes="$processes"
       --process_id="$i" "$@")
  if [ "$i" -eq 0 ]; then
    "${cmd[@]}" &
  else
    "${cmd[@]}" >"$logdir/process_$i.log" 2>&1 &
  fi
  pids+=("$!")
done
others="process 1"
[ "$processes" -eq 2 ] || others="processes 1-$((processes - 1))"
echo "$0: started $processes processes (coordinator 127.0.0.1:$port;" \
  "output of $others in $logdir)" >&2

# Poll rather than `wait -n`, to know which process ended.
running=$processes
done_flags=()
while [ "$running" -gt 0 ]; do
  for ((i = 0; i < processes; i++)); do
    [ -z "${done_flags[i]:-}" ] || continue
    pid=${pids[i]}
    if kill -0 "$pid" 2>/dev/null; then continue; fi
    status=0
    wait "$pid" || status=$?
    done_flags[i]=1
    running=$((running - 1))
    if [ "$status" -ne 0 ]; then
      echo "$0: process $i exited with status $status; stopping the others" >&2
      if [ "$i" -gt 0 ]; then
        echo "$0: last lines of $logdir/process_$i.log:" >&2
        tail -n 20 "$logdir/process_$i.log" >&2 || true
      fi
      stop_all
      exit "$status"
    fi
  done
  [ "$running" -eq 0 ] || sleep 1
done
echo "$0: all $processes processes finished" >&2
