"""DiffAugment, the discriminator penalties and feature matching: known
values of each piece (each GAN family's training step with them on:
tests/test_gan_options.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import diffaugment, losses, tasks
from jaxgen.models import dcgan
from jaxgen.models import layers
from jaxgen.tasks import regularizers
from tests.conftest import tiny_config

ALL = "color,translation,cutout"


def _images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0,
                            maxval=1.0)


# DiffAugment.


def test_policy_parsing_and_bad_names():
  assert diffaugment.parse_policy("cutout, color") == ("color", "cutout")
  assert diffaugment.parse_policy("") == ()
  with pytest.raises(ValueError, match=r"gan.diffaug.*'colour'.*valid"):
    diffaugment.parse_policy("colour,cutout")
  cfg = tiny_config("gan").gan
  cfg.diffaug = "flip"
  with pytest.raises(ValueError, match="gan.diffaug"):
    regularizers.Regularizers(cfg)
  for field, value in (("gp_weight", -1.0), ("r1_every", 0)):
    cfg = tiny_config("gan").gan
    cfg[field] = value
    with pytest.raises(ValueError, match=f"gan.{field}"):
      regularizers.Regularizers(cfg)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_documented_bound(channels):
  ops = diffaugment.parse_policy(ALL)
  # Extreme inputs (+-1 per pixel) push colour hardest.
  x = jnp.sign(_images((64, 16, 16, channels)))
  out = jax.jit(lambda x, k: diffaugment.augment(x, k, ALL))(
      x, jax.random.key(1))
  assert out.shape == x.shape
  bound = diffaugment.max_abs_value(ops, channels)
  assert float(jnp.max(jnp.abs(out))) <= bound
  # Colour does leave [-1, 1] (nothing is clipped, as in the reference).
  assert float(jnp.max(jnp.abs(out))) > 1.5
  geometric = diffaugment.augment(x, jax.random.key(1), "translation,cutout")
  assert float(jnp.max(jnp.abs(geometric))) <= 1.0


def test_color_on_constant_zero_is_a_per_image_brightness():
  # Saturation (around the pixel's channel mean) and contrast (around the
  # image mean) leave a constant image alone; brightness adds U(-0.5, 0.5).
  out = diffaugment.color(jnp.zeros((16, 4, 4, 3)), jax.random.key(0))
  per_image = out[:, 0, 0, 0]
  np.testing.assert_allclose(out, jnp.broadcast_to(
      per_image[:, None, None, None], out.shape), atol=1e-6)
  assert float(jnp.max(jnp.abs(per_image))) < 0.5
  assert float(jnp.std(per_image)) > 0.05  # Draws differ per image.


def test_color_contrast_on_one_channel():
  # Half +1, half -1 (mean 0): out = b + c * x with c in [0.5, 1.5].
  x = jnp.concatenate([jnp.ones((32, 2, 4, 1)), -jnp.ones((32, 2, 4, 1))], 1)
  out = diffaugment.color(x, jax.random.key(3))
  hi, lo = out[:, 0, 0, 0], out[:, -1, 0, 0]
  np.testing.assert_allclose(out[:, :2], jnp.broadcast_to(
      hi[:, None, None, None], (32, 2, 4, 1)), atol=1e-6)
  contrast = (hi - lo) / 2
  assert 0.5 <= float(contrast.min()) and float(contrast.max()) <= 1.5
  assert float(contrast.max() - contrast.min()) > 0.5
  assert float(jnp.max(jnp.abs((hi + lo) / 2))) <= 0.5  # The brightness.


def test_translate_moves_a_pixel_and_fills_zero():
  x = jnp.zeros((2, 16, 16, 1)).at[:, 5, 6].set(1.0)
  out = diffaugment.translate(x, jnp.array([[2, -1], [-9, 0]]))
  assert float(out[0, 7, 5, 0]) == 1.0 and float(out.sum()) == 2.0
  assert float(out[1, 3, 6, 0]) == 1.0  # -9 is clipped to 16 / 8 = 2.
  shifted = diffaugment.translate(jnp.ones((1, 16, 16, 1)),
                                  jnp.array([[2, 0]]))
  np.testing.assert_array_equal(shifted[0, :2], 0.0)
  np.testing.assert_array_equal(shifted[0, 2:], 1.0)


def test_rand_translation_per_image_shifts():
  x = jnp.zeros((32, 16, 16, 1)).at[:, 8, 8].set(1.0)
  out = diffaugment.rand_translation(x, jax.random.key(0))
  pos = np.argwhere(np.asarray(out[..., 0]) == 1.0)
  assert len(pos) == 32  # No pixel falls off: shifts are at most 2.
  shifts = pos[:, 1:] - 8
  assert np.abs(shifts).max() == 2
  assert len({tuple(s) for s in shifts}) > 5


def test_cutout_zeroes_a_half_size_square():
  mask = diffaugment.cutout_mask((2, 8, 8, 1), jnp.array([[4, 4], [0, 7]]))
  want = np.ones((2, 8, 8, 1), np.float32)
  want[0, 2:6, 2:6] = 0.0
  want[1, 0:2, 5:8] = 0.0  # Clipped at the borders.
  np.testing.assert_array_equal(mask, want)
  out = diffaugment.rand_cutout(jnp.ones((32, 16, 16, 1)), jax.random.key(0))
  zeros = np.asarray(out[..., 0]) == 0.0
  for z in zeros:  # A rectangle, at most 8x8.
    rows, cols = z.any(1).sum(), z.any(0).sum()
    assert z.sum() == rows * cols and rows <= 8 and cols <= 8
  assert (zeros.sum((1, 2)) == 64).any()


def test_augment_is_differentiable():
  x = _images((4, 8, 8, 3))
  w = _images((4, 8, 8, 3), seed=1)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(
      w * diffaugment.augment(x, jax.random.key(2), ALL))))(x)
  assert bool(jnp.all(jnp.isfinite(grad)))
  assert float(jnp.abs(grad).sum()) > 0.1


def test_pairs_share_the_geometry():
  sketch = _images((16, 16, 16, 1))
  photo = jnp.repeat(sketch, 3, axis=-1)
  s, p = diffaugment.augment_pair(sketch, photo, jax.random.key(0),
                                  "translation,cutout")
  np.testing.assert_array_equal(s[..., 0], p[..., 0])
  assert float(jnp.abs(s - sketch).max()) > 0.1
  # Colour applies to the judged image only.
  s, p = diffaugment.augment_pair(sketch, photo, jax.random.key(0), "color")
  np.testing.assert_array_equal(s, sketch)
  assert float(jnp.abs(p - photo).max()) > 0.1


# Penalties and feature matching.


def _linear(w):
  return lambda x: jnp.sum(x * w, axis=(1, 2, 3))


def test_gradient_penalty_of_a_linear_critic():
  w = _images((1, 4, 4, 2), seed=3)
  real, fake = _images((3, 4, 4, 2), seed=4), _images((3, 4, 4, 2), seed=5)
  want = (float(jnp.linalg.norm(w)) - 1.0) ** 2
  rng = jax.random.key(0)
  np.testing.assert_allclose(
      losses.gradient_penalty(_linear(w), real, fake, rng), [want] * 3,
      rtol=1e-5)
  # Patch logits are summed per example, scales summed: the same critic.
  patches = lambda x: jnp.sum(x * w, axis=-1)
  scales = lambda x: [jnp.sum(x * w / 2, -1), 0.5 * _linear(w)(x)]
  for d_fn in (patches, scales):
    np.testing.assert_allclose(
        losses.gradient_penalty(d_fn, real, fake, rng), [want] * 3,
        rtol=1e-5)
  unit = w / jnp.linalg.norm(w)
  np.testing.assert_allclose(
      losses.gradient_penalty(_linear(unit), real, fake, rng), 0.0,
      atol=1e-6)


def test_gradient_penalty_interpolates_per_example():
  # d(x) = 0.5 ||x||^2 has gradient x_hat; real = 0 and fake = 1 give
  # x_hat = 1 - eps per pixel, a gradient norm 4 (1 - eps) over 16 pixels.
  d_fn = lambda x: 0.5 * jnp.sum(x * x, axis=(1, 2, 3))
  rng = jax.random.key(1)
  pen = losses.gradient_penalty(d_fn, jnp.zeros((64, 4, 4, 1)),
                                jnp.ones((64, 4, 4, 1)), rng)
  eps = jax.random.uniform(rng, (64, 1, 1, 1)).reshape(-1)
  np.testing.assert_allclose(pen, (4 * (1 - eps) - 1) ** 2, rtol=1e-4,
                             atol=1e-6)
  assert float(jnp.std(pen)) > 0.5  # One eps per example.


def test_penalties_use_the_second_order_lowering():
  """Penalty calls of D run the DownConv lowering chosen for second-order
  differentiation on CPU ('matmul'; 'mixed' is several times slower there,
  benchmarks/penalty_bench.py) with the same parameters and outputs; an
  explicitly configured lowering is kept."""
  assert layers.second_order_down_impl(None, "cpu") == "matmul"
  assert layers.second_order_down_impl("auto", "cpu") == "matmul"
  assert layers.second_order_down_impl("conv", "cpu") == "conv"
  assert layers.second_order_down_impl(None, "gpu") is None
  disc = dcgan.Discriminator(width=4, max_width=8, norm="layer")
  x = _images((3, 16, 16, 1))
  v = disc.init(jax.random.key(0), x)
  cut = regularizers.for_penalties(disc)
  assert cut.downsample_impl == layers.second_order_down_impl(None)
  np.testing.assert_allclose(cut.apply(v, x), disc.apply(v, x), atol=1e-5)
  gp = lambda m: losses.gradient_penalty(lambda y: m.apply(v, y), x,
                                         jnp.flip(x, 0), jax.random.key(1))
  np.testing.assert_allclose(gp(cut), gp(disc), rtol=1e-4)
  fixed = disc.clone(downsample_impl="conv")
  assert regularizers.for_penalties(fixed) is fixed


def test_r1_known_values():
  w = _images((1, 4, 4, 2), seed=3)
  real = _images((3, 4, 4, 2), seed=4)
  np.testing.assert_allclose(losses.r1_penalty(_linear(w), real),
                             [float(jnp.sum(w * w))] * 3, rtol=1e-5)
  quadratic = lambda x: 0.5 * jnp.sum(x * x, axis=(1, 2, 3))
  np.testing.assert_allclose(losses.r1_penalty(quadratic, real),
                             jnp.sum(real * real, axis=(1, 2, 3)), rtol=1e-5)


def test_feature_matching_known_values():
  zeros = jnp.zeros((2, 3))
  real = [jnp.ones((2, 3)), jnp.array([[2.0, 0.0], [2.0, 0.0]])]
  fake = [zeros, jnp.zeros((2, 2))]
  # Layer 1: (1 - 0)^2 per element; layer 2: mean of [4, 0].
  np.testing.assert_allclose(losses.feature_matching(real, fake), 1.5)
  # Batch means: fakes +1 and -1 average to the real mean 0.
  pm = [jnp.array([[1.0], [-1.0]])]
  np.testing.assert_allclose(losses.feature_matching([zeros[:, :1]], pm), 0.0)
  # Paired (pix2pixHD): per-example L1 sees each pair.
  np.testing.assert_allclose(
      losses.feature_matching([zeros[:, :1]], pm, paired=True), [1.0, 1.0])
  with pytest.raises(ValueError, match="equally many"):
    losses.feature_matching(real, fake[:1])


def test_lazy_r1_changes_d_updates_only_every_r1_every():
  config = tiny_config("gan")
  config.gan.update(r1_weight=10.0, r1_every=3)
  task = tasks.get_task(config)
  state = task.init_state(jax.random.key(0))
  real = _images((8, 16, 16, 1))
  fake = _images((8, 16, 16, 1), seed=1)
  plain = tasks.get_task(tiny_config("gan"))

  def grads(task, d):
    return jax.grad(task.d_loss, has_aux=True)(d.params, d, real, fake,
                                               jax.random.key(2))

  grads = jax.jit(grads, static_argnums=0)
  for step, on in ((0, True), (1, False), (2, False), (3, True)):
    d = state.d.replace(step=jnp.asarray(step, jnp.int32))
    g, (m, stats) = grads(task, d)
    g0, (m0, stats0) = grads(plain, d)
    diff = max(float(jnp.abs(a - b).max()) for a, b in
               zip(jax.tree.leaves(g), jax.tree.leaves(g0)))
    assert (diff > 1e-4) == on, (step, diff)
    assert (float(m["d_r1"]) > 0) == on
    np.testing.assert_allclose(
        m["d_loss"], m0["d_loss"] + 0.5 * 10.0 * 3 * m["d_r1"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(stats0)):
      np.testing.assert_array_equal(a, b)  # R1's D call updates nothing.


# One BatchNorm batch of real and generated images (gan.d_joint_batch).


def test_apply_d_pair_joint_is_one_call_on_the_concatenation():
  disc = dcgan.Discriminator(width=4, max_width=8)
  real = _images((3, 16, 16, 1))
  fake = _images((5, 16, 16, 1), seed=1)
  v = disc.init(jax.random.key(0), real)
  call = lambda v, x: regularizers.apply_d(disc, v, x)
  pair = functools.partial(regularizers.apply_d_pair,
                           regularizers.d_call(disc))
  out_real, out_fake, v_joint = pair(v, real, fake, joint=True)
  both, stats, _ = call(v, jnp.concatenate([real, fake]))
  np.testing.assert_allclose(out_real, both[:3], atol=1e-6)
  np.testing.assert_allclose(out_fake, both[3:], atol=1e-6)
  for a, b in zip(jax.tree.leaves(v_joint["batch_stats"]),
                  jax.tree.leaves(stats)):
    np.testing.assert_array_equal(a, b)
  # Separately: each batch alone, the real call's statistics threaded on.
  sep_real, sep_fake, v_sep = pair(v, real, fake)
  alone, stats, _ = call(v, real)
  np.testing.assert_allclose(sep_real, alone, atol=1e-6)
  alone, stats, _ = call(regularizers.with_stats(v, stats), fake)
  np.testing.assert_allclose(sep_fake, alone, atol=1e-6)
  for a, b in zip(jax.tree.leaves(v_sep["batch_stats"]),
                  jax.tree.leaves(stats)):
    np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(out_fake - sep_fake).max()) > 1e-3
  # Two copies of one batch have that batch's statistics: the same logits.
  same, _, _ = pair(v, real, real, joint=True)
  np.testing.assert_allclose(same, call(v, real)[0], atol=1e-5)


def test_apply_d_pair_passes_labels_to_each_half():
  call = lambda v, x, y: (x.mean(axis=(1, 2, 3)) + y, v)
  real, fake = jnp.zeros((2, 4, 4, 1)), jnp.ones((3, 4, 4, 1))
  labels = (jnp.array([1, 2]), jnp.array([10, 20, 30]))
  for joint in (False, True):
    out_real, out_fake, _ = regularizers.apply_d_pair(
        call, {}, real, fake, labels, joint=joint)
    np.testing.assert_array_equal(out_real, [1, 2])
    np.testing.assert_array_equal(out_fake, [11, 21, 31])


@pytest.mark.parametrize("family,options", [
    ("gan", ()), ("siamese_gan", ()), ("siamese_gan", ("cond", "ac"))])
def test_joint_batch_lets_the_real_batch_shape_the_fake_logits(family,
                                                               options):
  """With gan.d_joint_batch, D's logits on the generated images (D's loss
  and G's) depend on the real images normalised with them; with separate
  batches they do not."""
  config = tiny_config(family, *options)
  shape = (4, 16, 16, config.data.channels)
  real, other, fake = (_images(shape, seed) for seed in (0, 5, 6))
  cond = bool(options)
  y = jnp.array([0, 1, 0, 1])
  for joint in (False, True):
    config.gan.d_joint_batch = joint
    task = tasks.get_task(config)
    state = task.init_state(jax.random.key(0))

    @jax.jit
    def fake_scores(real):
      _, (d_metrics, _) = task.d_loss(state.d.params, state.d, real, fake,
                                      jax.random.key(1),
                                      (y, y) if cond else None)
      _, (g_metrics, _) = task.g_loss(state.g.params, state, real,
                                      jax.random.key(2), y if cond else None)
      # siamese_gan's G loss has terms that read the real images.
      return d_metrics["d_fake"], g_metrics.get("g_adv", g_metrics["g_loss"])

    for a, b in zip(fake_scores(real), fake_scores(other)):
      assert (abs(float(a) - float(b)) > 1e-5) == joint, (joint, a, b)


@pytest.mark.parametrize("family", ["cgan", "cyclegan"])
def test_joint_batch_is_refused_where_not_implemented(family):
  config = tiny_config(family)
  config.gan.d_joint_batch = True
  with pytest.raises(ValueError, match="d_joint_batch.*separately"):
    tasks.get_task(config)
