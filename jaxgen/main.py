r"""Command-line entry point: parses flags and calls the train loop.

  python -m jaxgen.main --config=configs/vae.py:demo --workdir=runs/vae
  python -m jaxgen.main --config=configs/gan.py --workdir=runs/gan \
      --config.data.root=../shared/data/signatures --config.train.batch_size=32

Any config field can be overridden as --config.<path>=<value>.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxgen import configlib
from jaxgen import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/vae.py:demo.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Output folder (resumed if it exists).")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv):
  """absl flag parsing, with one clear line for a bad config override."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    # Overrides are applied while parsing; load the config file alone to say
    # which field is unknown and what the valid ones are.
    config_args = [a[len("--config="):] for a in argv[1:]
                   if a.startswith("--config=")]
    msg = None
    if config_args:
      msg = configlib.unknown_override(
          configlib.load_config_file(config_args[-1]), argv)
    sys.exit(f"FATAL Flags parsing error: {msg or e}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
