"""U-Net / encoder generators and the PatchGAN: shapes, skips, receptive
field, labels and mixed precision. Shapes come from jax.eval_shape (no
compilation); only the numeric tests run small models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import classifier, patchgan, unet
from jaxgen.tasks import base
from tests import reference

_TINY = dict(width=2, max_width=4)


def _key(seed):
  # XLA:CPU compiles threefry initialisers slowly; rbg keeps this file fast.
  return jax.random.key(seed, impl="rbg")


def _shapes(module, *args, **kwargs):
  """(variable shapes, output shape) without compiling anything."""
  key = _key(0)
  variables = jax.eval_shape(
      functools.partial(module.init, train=False, **kwargs), key, *args)
  out = jax.eval_shape(
      functools.partial(module.apply, train=False, **kwargs), variables,
      *args)
  return variables, out


@pytest.mark.parametrize("res,depth", [(64, 6), (128, 7), (256, 8)])
def test_unet_shapes_and_skip_concats(res, depth):
  assert unet.unet_depth(res) == depth
  sketch = jnp.zeros((2, res, res, 1))
  variables, out = _shapes(unet.UNet(out_channels=3, **_TINY), sketch)
  assert out.shape == (2, res, res, 3) and out.dtype == jnp.float32
  params = variables["params"]
  # Encoder: depth stride-2 blocks, the last one at 1x1 (checked by the
  # count: res / 2**depth == 1).
  downs = sorted(k for k in params if k.startswith("down"))
  assert len(downs) == depth and res // 2 ** depth == 1
  for i in range(depth):
    assert params[f"down{i}"]["kernel"].shape[-1] == unet.level_width(2, 4, i)
  # Decoder: the innermost UpConv reads the bottleneck alone; every other
  # one reads [decoder, skip] concatenated, i.e. twice the level's width.
  for level in range(1, depth):
    cin = params[f"up{level}"]["kernel"].shape[2]
    inner = unet.level_width(2, 4, level)
    assert cin == (inner if level == depth - 1 else 2 * inner), level
  assert params["up0"]["kernel"].shape[2:] == (2 * 2, 3)


@pytest.mark.parametrize("res", [64, 128, 256])
def test_encoder_generator_and_patchgan_shapes(res):
  sketch, photo = jnp.zeros((2, res, res, 1)), jnp.zeros((2, res, res, 3))
  variables, out = _shapes(unet.EncoderGenerator(out_channels=3, **_TINY),
                           sketch, None, jnp.zeros((2, 5)))
  assert out.shape == (2, res, res, 3)
  assert variables["params"]["code"]["kernel"].shape[-1] == 100
  assert variables["params"]["project"]["kernel"].shape[0] == 100 + 5
  _, logits = _shapes(patchgan.PatchGAN(n_layers=3, **_TINY), sketch, photo)
  side = patchgan.output_size(res, 3)
  assert logits.shape == (2, side, side) and side == res // 8 - 2


def test_bad_resolutions_are_clear():
  with pytest.raises(ValueError, match="power-of-two"):
    unet.unet_depth(96)
  with pytest.raises(ValueError, match="lower model.n_layers"):
    _shapes(patchgan.PatchGAN(n_layers=3, **_TINY), jnp.zeros((1, 16, 16, 1)),
            jnp.zeros((1, 16, 16, 3)))


def test_receptive_field_formula():
  assert [patchgan.receptive_field(n) for n in (1, 2, 3, 4)] == [
      16, 34, 70, 142]


@pytest.mark.parametrize("n_layers,size", [(2, 96), (3, 128), (4, 256)])
def test_receptive_field_empirically(n_layers, size):
  """Gradient support of one output logit w.r.t. the input pixels."""
  model = patchgan.PatchGAN(n_layers=n_layers, width=2, max_width=2)
  cond, image = jnp.zeros((1, size, size, 1)), jnp.zeros((1, size, size, 1))
  variables = jax.jit(functools.partial(model.init, train=False))(
      _key(0), cond, image)
  side = patchgan.output_size(size, n_layers)

  def centre_logit(x):
    return model.apply(variables, cond, x, train=False)[0, side // 2,
                                                        side // 2]

  grad = np.asarray(jax.jit(jax.grad(centre_logit))(
      jax.random.normal(_key(1), image.shape)))[0, ..., 0]
  rows = np.flatnonzero(np.abs(grad).sum(1) > 0)
  cols = np.flatnonzero(np.abs(grad).sum(0) > 0)
  assert rows[0] > 0 and rows[-1] < size - 1  # Not clipped by the border.
  field = patchgan.receptive_field(n_layers)
  assert rows[-1] - rows[0] + 1 == field
  assert cols[-1] - cols[0] + 1 == field


@pytest.fixture(scope="session")
def small_unet():
  """A 16 px U-Net and its variables; the bottleneck block is down3."""
  model = unet.UNet(out_channels=3, width=4, max_width=8)
  x = jax.random.uniform(_key(0), (1, 16, 16, 1), minval=-1)
  variables = jax.jit(functools.partial(model.init, train=False))(_key(1), x)
  return model, variables, x


def _zero_bottleneck(variables):
  params = dict(variables["params"])
  params["down3"] = jax.tree_util.tree_map(jnp.zeros_like, params["down3"])
  return {**variables, "params": params}


def test_skip_path_carries_input_when_bottleneck_is_zeroed(small_unet):
  model, variables, x = small_unet
  variables = _zero_bottleneck(variables)
  poked = x.at[0, 5, 6, 0].add(1.0)
  apply = jax.jit(functools.partial(model.apply, train=False))
  diff = np.abs(np.asarray(apply(variables, poked) - apply(variables, x)))
  assert diff.max() > 1e-4
  # The first skip (8x8) brings the change back near where it happened:
  # the largest change is in the poked pixel's neighbourhood.
  y, xx = np.unravel_index(np.argmax(diff[0].sum(-1)), diff.shape[1:3])
  assert abs(y - 5) <= 4 and abs(xx - 6) <= 4

  # Without skips and with the bottleneck zeroed the output is constant.
  plain = unet.UNet(out_channels=3, width=4, max_width=8, use_skips=False)
  pv = _zero_bottleneck(jax.jit(functools.partial(plain.init, train=False))(
      _key(1), x))
  apply = jax.jit(functools.partial(plain.apply, train=False))
  a, b = apply(pv, x), apply(pv, poked)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dropout_only_in_training(small_unet):
  model, variables, x = small_unet
  train = jax.jit(lambda r: model.apply(variables, x, train=True,
                                        rngs={"dropout": r},
                                        mutable=["batch_stats"])[0])
  assert np.abs(np.asarray(train(_key(0)) - train(_key(1)))).max() > 0
  # In eval mode the dropout keys make no difference.
  evaluate = jax.jit(lambda r: model.apply(variables, x, train=False,
                                           rngs={"dropout": r}))
  np.testing.assert_array_equal(np.asarray(evaluate(_key(0))),
                                np.asarray(evaluate(_key(1))))


def test_label_channels_change_the_output():
  model = unet.UNet(out_channels=3, width=4, max_width=8, num_classes=2,
                    label_dim=2)
  x = jnp.zeros((2, 16, 16, 1))
  labels = jnp.array([0, 1])
  variables = jax.jit(functools.partial(model.init, train=False))(
      _key(0), x, labels)
  assert variables["params"]["label_channels"]["Embed_0"][
      "embedding"].shape == (2, 2)
  assert variables["params"]["down0"]["kernel"].shape[2] == 1 + 2
  y = np.asarray(jax.jit(functools.partial(model.apply, train=False))(
      variables, x, labels))
  assert np.abs(y[0] - y[1]).max() > 0  # Same sketch, different label.
  with pytest.raises(ValueError, match="got no label"):
    model.apply(variables, x, train=False)
  d_vars, _ = _shapes(patchgan.PatchGAN(n_layers=1, num_classes=2,
                                        label_dim=2, **_TINY),
                      x, jnp.zeros((2, 16, 16, 3)), labels)
  assert d_vars["params"]["DownConv_0"]["kernel"].shape[2] == 1 + 3 + 2


@pytest.mark.parametrize("module,args", [
    (unet.UNet(out_channels=3, **_TINY), (jnp.zeros((2, 32, 32, 1)),)),
    (patchgan.PatchGAN(n_layers=2, **_TINY),
     (jnp.zeros((2, 32, 32, 1)), jnp.zeros((2, 32, 32, 3)))),
    (classifier.Classifier(num_classes=2, **_TINY),
     (jnp.zeros((2, 32, 32, 3)),)),
])
def test_bfloat16_compute_keeps_float32_params_and_outputs(module, args):
  bf16 = module.clone(dtype=jnp.bfloat16)
  variables, out = _shapes(bf16, *args)
  leaves = jax.tree_util.tree_leaves(variables)
  assert leaves and all(v.dtype == jnp.float32 for v in leaves)
  assert out.dtype == jnp.float32
  # The convolutions themselves run in bfloat16, every one of them.
  convs = reference.primitive_input_dtypes(
      functools.partial(bf16.apply, train=False),
      jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                             variables), *args)["conv_general_dilated"]
  assert set(convs) == {("bfloat16", "bfloat16")}, convs
  assert base.resolve_dtype("auto") == (
      jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
  assert base.resolve_dtype("bfloat16") == jnp.bfloat16
  with pytest.raises(ValueError, match="model.dtype"):
    base.resolve_dtype("fp8")
