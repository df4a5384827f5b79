r"""Trains a model: parses flags and calls the train loop.

  python -m jaxgen.main --config=configs/vae.py:demo --workdir=runs/vae
  python -m jaxgen.main --config=configs/gan.py --workdir=runs/gan \
      --config.data.root=../shared/data/signatures --config.train.batch_size=32

Several processes (one per host, or per GPU) run the same command with
--coordinator_address=HOST:PORT --num_processes=N --process_id=I; on Cloud
TPU slices and under SLURM's srun these are detected. launch/ has scripts.
SIGTERM saves a checkpoint at the current step and exits with status 0.

(or `jaxgen-train` once installed). Any config field can be overridden as
--config.<path>=<value>. A workdir that already holds a run is resumed; one
that holds a run of another task or model is an error naming what differs.
Mistakes in flags, config or data are one or two lines on stderr (exit 1 or
2); --verbose shows their traceback.
"""

import os
import sys
from typing import List, Optional

from absl import flags
from ml_collections import config_flags

from jaxgen import cli
from jaxgen import configlib
from jaxgen import distributed
from jaxgen import train


def _define(fv: flags.FlagValues, argv: List[str]):
  # The config flag reads its --config.* overrides from argv itself.
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file, e.g. configs/vae.py:demo.",
      flag_values=fv, lock_config=True, sys_argv=argv)
  flags.DEFINE_string("workdir", None, "Output folder (resumed if it exists).",
                      flag_values=fv)
  flags.DEFINE_string(
      "coordinator_address", "", "host:port of process 0 in a multi-process "
      "run (default: $JAX_COORDINATOR_ADDRESS; detected on Cloud TPU and "
      "SLURM).", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "Processes in the run "
                       "(default: $JAX_NUM_PROCESSES, or detected).",
                       flag_values=fv)
  flags.DEFINE_integer("process_id", None, "This process's index "
                       "(default: $JAX_PROCESS_ID, or detected).",
                       flag_values=fv)
  flags.DEFINE_integer(
      "heartbeat_timeout", distributed.DEFAULT_HEARTBEAT_TIMEOUT,
      "Seconds after which a silent process counts as dead and the others "
      "stop with an error.", flag_values=fv)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=fv)


def _explain(error: Exception, argv: List[str]) -> Optional[str]:
  """One line for an unknown --config.<field> override."""
  if not isinstance(error, (AttributeError, KeyError)):
    return None
  # Overrides are applied while parsing; load the config file alone to say
  # which field is unknown and what the valid ones are.
  config_args = [a[len("--config="):] for a in argv[1:]
                 if a.startswith("--config=")]
  if not config_args:
    return None
  return configlib.unknown_override(
      configlib.load_config_file(config_args[-1]), argv)


def _train(fv: flags.FlagValues):
  path = fv["config"].config_filename.split(":")[0]
  if not os.path.isfile(path):
    # config_flags defers this error to the config's first use.
    raise cli.UserError(f"No config file at {path!r} (--config).")
  distributed.initialize(fv.coordinator_address, fv.num_processes,
                         fv.process_id, fv.heartbeat_timeout)
  train.train_and_evaluate(fv.config, fv.workdir)


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  return cli.run(_train, _define, argv, __doc__, explain=_explain)


if __name__ == "__main__":
  sys.exit(main())
