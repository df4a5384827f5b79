"""In-training FID of a tiny config's fresh state, with the stand-in
extractor of tests/test_evaluate.py, in one of several processes:

  python tests/multihost_fid.py CONFIG_SPEC CACHE_DIR OUT_JSON \
      [COORDINATOR NUM_PROCESSES PROCESS_ID]

Process 0 writes {metric: value} to OUT_JSON.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top
from jaxgen import distributed

if len(sys.argv) > 4:
  distributed.initialize(sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))

import jax
import pytest

from jaxgen import configlib
from jaxgen import parallel
from jaxgen import tasks
from jaxgen import train
from jaxgen.data import pipeline
from jaxgen.evaluation import in_training
from tests import test_evaluate


def main():
  spec, cache_dir, out = sys.argv[1:4]
  config = configlib.load_config_file(spec)
  with config.unlocked():
    config.eval.update(fid_every=1, fid_num=10, fid_batch_size=4,
                       kid_subsets=3)
  test_ds = pipeline.build(config.data, "test")
  config = train.with_data_facts(
      config, len(pipeline.build(config.data, "train").source))
  task = tasks.get_task(config)
  with pytest.MonkeyPatch.context() as mp:
    test_evaluate.use_standin(mp, cache_dir)
    fid = in_training.from_config(config, task, test_ds)
    state = train.init_state(task, jax.random.key(0),
                             parallel.make_mesh())
    result = {k: float(v) for k, v in fid(state).items()}
  if jax.process_index() == 0:
    with open(out, "w") as f:
      json.dump(result, f)


if __name__ == "__main__":
  main()
