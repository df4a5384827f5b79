"""The PyTorch references in benchmarks/ build the same networks as jaxgen.

For every config whose task has a reference: the reference's parameters
must match the Flax model's parameters shape for shape (compared with each
shape's dimensions sorted, since the frameworks order kernel axes
differently), and its train step must run and change the parameters.
"""

import glob
import os

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from jaxgen import configlib
from jaxgen import tasks as tasks_lib
from jaxgen.data import pipeline

try:
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_ref  # pylint: disable=g-import-not-at-top
except ImportError:  # torch is optional: only benchmarks need it.
  torch = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)
                 for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _param_shapes(state):
  """Sorted per-shape-sorted dims of every leaf under a `params` field."""
  shapes = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    names = [getattr(k, "name", getattr(k, "key", None)) for k in path]
    if "params" in names and "opt_state" not in names:
      shapes.append(tuple(sorted(np.shape(leaf))))
  return sorted(shapes)


def _build(config_name, arg="tiny"):
  config = configlib.load_config_file(
      f"{os.path.join(ROOT, 'configs', config_name)}:{arg}")
  ds = pipeline.build(config.data, "train")
  batch = pipeline.first_batch(ds, config.train.batch_size)
  batch.pop("mask")
  return config, batch


@absltest.skipIf(torch is None, "torch is not installed")
class TorchReferenceTest(parameterized.TestCase):

  @parameterized.parameters(*CONFIGS)
  def test_same_parameters_and_a_step_runs(self, config_name):
    config, batch = _build(config_name)
    if not torch_ref.has_reference(config.task):
      self.skipTest(f"no PyTorch reference for {config.task}")
    task = tasks_lib.get_task(config)
    state = task.init_state(jax.random.key(0), batch)
    ref = torch_ref.make(config, batch)
    torch_shapes = sorted(tuple(sorted(p.shape)) for p in ref.parameters())
    self.assertEqual(torch_shapes, _param_shapes(state))
    before = [p.detach().clone() for p in ref.parameters()]
    for _ in range(2):
      loss = ref.step()
      self.assertTrue(np.isfinite(loss))
    changed = [not torch.equal(a, p) for a, p in zip(before, ref.parameters())]
    self.assertTrue(all(changed), "every parameter should get an update")


if __name__ == "__main__":
  absltest.main()
