"""The PyTorch references in benchmarks/ build the same networks as jaxgen.

For every config whose task has a reference: the reference's parameters
must match the Flax model's parameters shape for shape (compared with each
shape's dimensions sorted, since the frameworks order kernel axes
differently), and its train step must run and change the parameters.

CycleGAN also gets a layer-by-layer check: each Flax kernel, mapped from
HWIO to PyTorch's layout, has exactly the shape of the torch weight it
corresponds to, and with the Flax weights copied in, the torch generator and
discriminator compute the same outputs (reflect padding, instance norm and
the 3x3 transposed-convolution convention against PyTorch's own).
"""

import glob
import os
import types

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import configlib
from jaxgen import tasks as tasks_lib
from jaxgen.data import pipeline

try:
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_ref  # pylint: disable=g-import-not-at-top
  from benchmarks.torch_ref import cyclegan as cyclegan_ref  # pylint: disable=g-import-not-at-top
  from benchmarks.torch_ref.cgan import PatchGAN  # pylint: disable=g-import-not-at-top
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


class _OneTorchThread(absltest.TestCase):
  """Runs torch on one thread: the tiny networks gain nothing from more,
  and on a loaded machine OpenMP's barriers make every op ~10x slower."""

  def setUp(self):
    super().setUp()
    threads = torch.get_num_threads()
    self.addCleanup(torch.set_num_threads, threads)
    torch.set_num_threads(1)


@absltest.skipIf(torch is None, "torch is not installed")
class TorchReferenceTest(_OneTorchThread, parameterized.TestCase):

  @parameterized.named_parameters((c[:-len(".py")], c) for c in CONFIGS)
  def test_same_parameters_and_a_step_runs(self, config_name):
    config, batch = _build(config_name)
    if not torch_ref.has_reference(config.task):
      self.skipTest(f"no PyTorch reference for {config.task}")
    task = tasks_lib.get_task(config)
    state = task.init_state(jax.random.key(0), batch)
    ref = torch_ref.make(config, batch)
    torch_shapes = sorted(tuple(sorted(p.shape)) for p in ref.parameters())
    self.assertEqual(torch_shapes, _param_shapes(state))
    if config.task in LAYER_CHECKS:
      LAYER_CHECKS[config.task](self, task, state, ref)
    before = [p.detach().clone() for p in ref.parameters()]
    for _ in range(2):
      loss = ref.step()
      self.assertTrue(np.isfinite(loss))
    changed = [not torch.equal(a, p) for a, p in zip(before, ref.parameters())]
    self.assertTrue(all(changed), "every parameter should get an update")


def _generator_layers(num_blocks):
  """Flax names of resnet.ResnetGenerator's convolutions, in call order."""
  blocks = [f"block{i}/Conv_{j}" for i in range(num_blocks) for j in range(2)]
  return ["stem", "down0", "down1"] + blocks + ["up1", "up0", "head"]


def _patchgan_layers(n_layers):
  """Flax names of patchgan.PatchGAN's convolutions, in call order."""
  return [f"DownConv_{i}" for i in range(n_layers)] + ["Conv_0", "Conv_1"]


def _torch_pairs(flax_params, names, module):
  """(torch parameter, Flax value in torch layout) for every parameter.

  `module`'s convolutions, in registration order, are paired with the Flax
  layers `names`; kernels go from HWIO to OIHW (Conv2d) or, flipped
  spatially, to (Cin, Cout, kh, kw) (ConvTranspose2d). Every Flax parameter
  must be used and every conv's bias must exist on both sides or neither.
  """
  convs = [m for m in module.modules()
           if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
  assert len(convs) == len(names), (len(convs), names)
  pairs = []
  for name, conv in zip(names, convs):
    layer = flax_params
    for key in name.split("/"):
      layer = layer[key]
    kernel = np.asarray(layer["kernel"])
    if isinstance(conv, torch.nn.ConvTranspose2d):
      kernel = kernel[::-1, ::-1].transpose(2, 3, 0, 1)
    else:
      kernel = kernel.transpose(3, 2, 0, 1)
    pairs.append((conv.weight, np.array(kernel)))
    assert ("bias" in layer) == (conv.bias is not None), name
    if conv.bias is not None:
      pairs.append((conv.bias, np.array(layer["bias"])))
  assert len(pairs) == len(jax.tree_util.tree_leaves(flax_params))
  return pairs


def _cyclegan_networks(task, params, ref):
  """(Flax module, its params, torch module, Flax layer names) per network.

  Args:
    task: a CycleGANTask.
    params: {"ab", "ba", "a", "b"}: the generators' and discriminators'.
    ref: anything with the reference's g_ab, g_ba, d_a and d_b modules.
  """
  m = task.config.model
  g, d = _generator_layers(m.num_blocks), _patchgan_layers(m.n_layers)
  return [(task.g_ab, params["ab"], ref.g_ab, g),
          (task.g_ba, params["ba"], ref.g_ba, g),
          (task.disc, params["a"], ref.d_a, d),
          (task.disc, params["b"], ref.d_b, d)]


def _check_cyclegan_layers(test, task, state, ref):
  """Layer by layer, each torch weight has its Flax kernel's mapped shape."""
  params = {**state.g.params, **state.d.params}
  for _, p, module, names in _cyclegan_networks(task, params, ref):
    for tp, value in _torch_pairs(p, names, module):
      test.assertEqual(tuple(tp.shape), value.shape)


# Stricter per-task shape checks than the sorted dimensions: task -> fn(test,
# task, state, reference).
LAYER_CHECKS = {"cyclegan": _check_cyclegan_layers}


@absltest.skipIf(torch is None, "torch is not installed")
class CycleGANSameOutputsTest(_OneTorchThread):

  def test_same_outputs_with_copied_weights(self):
    """Flax ResNet generators and instance-norm PatchGANs vs torch's."""
    config = configlib.load_config_file(
        os.path.join(ROOT, "configs", "cyclegan.py") + ":tiny")
    # Two PatchGAN layers, so that a normalised strided block is covered.
    config.model.n_layers = 2
    task = tasks_lib.get_task(config)
    m, ca, cb = config.model, task.ca, task.cb
    nets = types.SimpleNamespace(
        g_ab=cyclegan_ref.ResnetGenerator(ca, cb, m),
        g_ba=cyclegan_ref.ResnetGenerator(cb, ca, m),
        d_a=PatchGAN(ca, m, 0, norm=m.norm),
        d_b=PatchGAN(cb, m, 0, norm=m.norm))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
      # Kernels at the initialiser's scale; random (non-zero) biases.
      std = 0.1 if path[-1].key == "bias" else np.prod(leaf.shape[:-1])**-0.5
      return rng.normal(0, std, leaf.shape).astype(np.float32)

    x = {c: rng.uniform(-1, 1, (2, 16, 20, c)).astype(np.float32)
         for c in (ca, cb)}
    ex = {c: jnp.zeros((1, 16, 20, c)) for c in (ca, cb)}
    shapes = {
        "ab": jax.eval_shape(task.g_ab.init, jax.random.key(0), ex[ca]),
        "ba": jax.eval_shape(task.g_ba.init, jax.random.key(0), ex[cb]),
        "a": jax.eval_shape(task.disc.init, jax.random.key(0), None, ex[ca]),
        "b": jax.eval_shape(task.disc.init, jax.random.key(0), None, ex[cb])}
    params = {k: jax.tree_util.tree_map_with_path(fill, v["params"])
              for k, v in shapes.items()}
    for module, p, tmod, names in _cyclegan_networks(task, params, nets):
      with torch.no_grad():
        for tp, value in _torch_pairs(p, names, tmod):
          tp.copy_(torch.from_numpy(value))
      cin = next(tmod.parameters()).shape[1]
      xt = torch.from_numpy(x[cin]).permute(0, 3, 1, 2)
      apply = jax.jit(module.apply, static_argnames="train")
      with torch.no_grad():
        if module is task.disc:
          want = apply({"params": p}, None, x[cin], train=True)
          got = tmod(None, xt).numpy()
        else:
          want = apply({"params": p}, x[cin], train=True)
          got = tmod(xt).permute(0, 2, 3, 1).numpy()
      self.assertEqual(got.shape, want.shape)
      err = float(np.max(np.abs(got - np.asarray(want))))
      self.assertLess(err, 1e-5, f"{type(tmod).__name__}, {cin} channels in")


if __name__ == "__main__":
  absltest.main()
