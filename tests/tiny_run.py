"""Runs tiny configs in a fresh process and saves their final parameters.

Used by tests that need a different device count (XLA_FLAGS must be set
before JAX starts):
  python tests/tiny_run.py CONFIG_SPEC WORKDIR OUT_NPZ [CONFIG_SPEC ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxgen import configlib, train  # pylint: disable=g-import-not-at-top


def flat_params(state):
  """{path: array} of every parameter and statistic in a state."""
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state))
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves
          if hasattr(v, "shape")}


def main():
  args = sys.argv[1:]
  if not args or len(args) % 3:
    sys.exit(__doc__)
  for spec, workdir, out in zip(args[::3], args[1::3], args[2::3]):
    config = configlib.load_config_file(spec)
    result = train.train_and_evaluate(config, workdir)
    np.savez(out, devices=len(jax.devices()), **flat_params(result.state))


if __name__ == "__main__":
  main()
