"""Several processes as one run: start-up, preemption, who writes.

One jaxgen run may span several processes (one per host of a TPU slice, one
per GPU or node under SLURM, or a few on one machine to try it out). Each
process runs the same program (SPMD): the same jitted steps on one global
`Mesh`, its own shard of every batch, and the same Python control flow, so
every decision that changes that flow (stop, save, evaluate) must be taken
at the same step by all of them.

* `initialize` starts `jax.distributed` from explicit arguments (flags or
  `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`), or
  lets jax detect Cloud TPU slices and SLURM jobs; with one process it does
  nothing. On CPU, processes talk through gloo.
* `Preemption` tells the loop when to save and stop after SIGTERM (how Cloud
  TPU, SLURM and spot VMs stop a job): with several processes through jax's
  preemption sync point, which makes every process see the request at the
  same step; with one process through a plain signal flag.
* Only process 0 writes logs, samples and plots (`is_main`); orbax writes
  checkpoints collectively.

If one process dies, jax's coordination service stops the others with an
error naming the missing task once its heartbeat is `heartbeat_timeout`
seconds overdue, rather than letting them wait in a collective forever.
"""

import os
import signal
import threading
from typing import Optional

from absl import logging
import jax
from jax.experimental import multihost_utils

# A missing process is noticed within this many seconds (jax's default is
# 100 s; a preempted slice should not idle that long).
DEFAULT_HEARTBEAT_TIMEOUT = 60


def _int_env(name: str) -> Optional[int]:
  value = os.environ.get(name, "")
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r} is not an integer.") from None


def cluster_detected() -> bool:
  """Whether this process is one of several started by SLURM or Cloud TPU.

  SLURM: inside an `srun` step of more than one task. Cloud TPU: a slice
  with more than one worker host.

  Returns:
    True when jax's own cluster detection should run.
  """
  if os.environ.get("SLURM_STEP_ID") is not None:
    tasks = _int_env("SLURM_STEP_NUM_TASKS") or _int_env("SLURM_NTASKS")
    if tasks and tasks > 1:
      return True
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def initialize(coordinator_address: str = "",
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT) -> bool:
  """Starts jax.distributed when this run has several processes.

  Call it before anything touches a jax device.

  Args:
    coordinator_address: "host:port" of process 0; "" reads
      JAX_COORDINATOR_ADDRESS.
    num_processes: processes in the run; None reads JAX_NUM_PROCESSES.
    process_id: this process's index; None reads JAX_PROCESS_ID.
    heartbeat_timeout: seconds after which a silent process counts as dead
      and the others stop with an error.

  Returns:
    Whether jax.distributed was initialised (False: a single process).

  Raises:
    ValueError: an incomplete or inconsistent set of arguments.
  """
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS",
                                                  "")
  num = num_processes if num_processes is not None else _int_env(
      "JAX_NUM_PROCESSES")
  pid = process_id if process_id is not None else _int_env("JAX_PROCESS_ID")
  explicit = bool(address) or num is not None or pid is not None
  if explicit:
    missing = [name for name, v in (("coordinator address", address),
                                     ("number of processes", num),
                                     ("process id", pid)) if v in ("", None)]
    if missing:
      raise ValueError(
          "Several processes need --coordinator_address, --num_processes and "
          f"--process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
          f"JAX_PROCESS_ID); missing: {', '.join(missing)}.")
    if num < 1 or not 0 <= pid < num:
      raise ValueError(f"--process_id={pid} must be in [0, {num}) and "
                       f"--num_processes={num} at least 1.")
    if num == 1:
      return False
  elif not cluster_detected():
    return False
  # Only the CPU client reads this; GPUs and TPUs have their own links.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = dict(heartbeat_timeout_seconds=heartbeat_timeout)
  if explicit:
    kwargs.update(coordinator_address=address, num_processes=num,
                  process_id=pid)
  jax.distributed.initialize(**kwargs)
  logging.info("Process %d of %d (%d local / %d global devices).",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True


def is_main() -> bool:
  """Whether this process writes logs, samples and plots."""
  return jax.process_index() == 0


class Preemption:
  """Says at which step to save and stop after SIGTERM.

  Use as a context manager around the loop: with one process it catches
  SIGTERM (restoring the previous handler on exit); with several, jax's
  preemption notifier catches it and `requested` is a sync point that is
  True at the same step on every process.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None
    self._multi = jax.process_count() > 1

  def __enter__(self):
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_signal(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint after this step, then "
                    "stopping.")
    self._flag.set()

  def requested(self, step: int) -> bool:
    """Whether to save and stop after `step` (same answer on all processes).

    Args:
      step: the step just dispatched; every process must call this once per
        step with the same value.

    Returns:
      True once SIGTERM has arrived (on any process).
    """
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag.is_set()
