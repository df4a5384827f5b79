"""Perceptual loss on early FID-Inception features (jaxgen/perceptual.py);
the cgan and cyclegan training steps with it: tests/test_gan_options.py.

Tests marked `requires_weights` use the real network weights named by
$JAXGEN_INCEPTION_WEIGHTS (see tests/test_inception.py) and are skipped
without them; the rest use randomly initialised or hand-set feature weights.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import configlib
from jaxgen import perceptual
from jaxgen.evaluation import inception
from jaxgen.evaluation import weights
from jaxgen.tasks import cgan
from jaxgen.tasks import cyclegan
from tests.test_inception import _cache_in_tmp  # pylint: disable=unused-import
from tests.test_inception import requires_weights
from tests.test_inception import WEIGHTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = "Conv2d_1a_3x3,Conv2d_2b_3x3"  # Fits the tiny configs' 16 px.
TASKS = {"cgan": cgan.CGANTask, "cyclegan": cyclegan.CycleGANTask}


def _config(name, weight=0.5, layers=SMALL):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py:tiny"))
  config.gan.update(perceptual_weight=weight, perceptual_layers=layers)
  return config


def _images(n, size, channels=3, seed=0):
  """Blocky random images in [-1, 1]: edges at every 8th pixel."""
  rng = np.random.default_rng(seed)
  cells = rng.uniform(-1, 1, (n, size // 8 + 1, size // 8 + 1, channels))
  x = np.kron(cells, np.ones((1, 8, 8, 1)))[:, :size, :size]
  return jnp.asarray(x, jnp.float32)


@pytest.fixture(scope="session")
def random_params():
  return perceptual.init_params(jax.random.key(0), perceptual.LAYERS)


# Layers, sizes and config values.


def test_layers_are_ordered_and_sizes_known(random_params):
  assert perceptual.parse_layers(" Conv2d_4a_3x3,Conv2d_1a_3x3,Conv2d_1a_3x3"
                                 ) == ("Conv2d_1a_3x3", "Conv2d_4a_3x3")
  # 3x3/2 conv, two 3x3 convs (the second padded), 3x3/2 pool, 1x1, 3x3.
  assert [perceptual.min_size(n) for n in perceptual.LAYERS] == [
      3, 7, 7, 11, 19]
  assert perceptual.min_size(perceptual.DEFAULT_LAYERS) == 19
  feats = perceptual.features(random_params, jnp.zeros((1, 19, 19, 1)),
                              perceptual.DEFAULT_LAYERS)
  assert {k: v.shape for k, v in feats.items()} == {
      "Conv2d_2b_3x3": (1, 7, 7, 64), "Conv2d_4a_3x3": (1, 1, 1, 192)}
  with pytest.raises(ValueError, match="18x18 px are too small.*19 px"):
    perceptual.features(random_params, jnp.zeros((1, 18, 18, 3)),
                        perceptual.DEFAULT_LAYERS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_bad_values_are_clear_errors_at_construction(name, random_params):
  with pytest.raises(ValueError, match="gan.perceptual_layers.*Conv2d_1a_3x3"):
    TASKS[name](_config(name, layers="Mixed_5b"), random_params)
  with pytest.raises(ValueError, match="gan.perceptual_weight must be >= 0"):
    TASKS[name](_config(name, weight=-1.0), random_params)
  # The default layers need 19 px; the tiny configs train on 16 px crops.
  with pytest.raises(ValueError, match="16x16 px.*at least 19 px"):
    TASKS[name](_config(name, layers=perceptual.DEFAULT_LAYERS),
                random_params)
  # Off (and stored configs without the fields): no weights are needed.
  config = _config(name, weight=0.0)
  assert TASKS[name](config).perceptual is None
  del config.gan["perceptual_weight"], config.gan["perceptual_layers"]
  assert TASKS[name](config).perceptual is None


def test_missing_weights_is_one_clear_error(monkeypatch, tmp_path):
  monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path))
  for source in (str(tmp_path / "missing.whl"), None):
    if source:
      monkeypatch.setenv(weights.ENV_WEIGHTS, source)
    else:
      monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    # The task builds (a stored run loads to translate); a fresh start
    # stops before training, with the error naming the way out.
    for name in ("cgan", "cyclegan"):
      task = TASKS[name](_config(name))
      with pytest.raises(weights.WeightsNotFoundError,
                         match=r"perceptual_weight > 0.*\$JAXGEN_INCEPTION_"
                         r"WEIGHTS.*README, section 'Evaluation'"):
        task.load_pretrained(None)


# The loss with hand-set and random weights.


def test_loss_known_value_with_a_hand_set_filter():
  # Conv2d_1a_3x3 = one filter copying the red channel at the centre tap:
  # feature[i, j] = relu(normalised red at (2i + 1, 2j + 1)).
  kernel = np.zeros((3, 3, 3, 32), np.float32)
  kernel[1, 1, 0, 0] = 1.0
  params = {"params": {"Conv2d_1a_3x3": {"conv": {
      "kernel": jnp.asarray(kernel), "bias": jnp.zeros(32)}}}}
  x, y = _images(2, 9, seed=1), _images(2, 9, seed=2)
  norm = lambda v: ((np.asarray(v) + 1) * 127.5 - 128) / 128
  fx = np.maximum(norm(x)[:, 1::2, 1::2, 0], 0)
  fy = np.maximum(norm(y)[:, 1::2, 1::2, 0], 0)
  expected = np.abs(fx - fy).sum() / (2 * 4 * 4 * 32)
  loss = perceptual.perceptual_loss(params, x, y, "Conv2d_1a_3x3")
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_loss_plumbing_with_random_weights(random_params):
  x, y = _images(2, 16, seed=1), _images(2, 16, seed=2)
  loss = perceptual.perceptual_loss(random_params, x, y, SMALL)
  fx = perceptual.features(random_params, x, SMALL)
  fy = perceptual.features(random_params, y, SMALL)
  per_layer = [np.abs(fx[k] - fy[k]).mean() for k in SMALL.split(",")]
  np.testing.assert_allclose(loss, np.mean(per_layer), rtol=1e-5)
  assert float(perceptual.perceptual_loss(random_params, x, x, SMALL)) == 0
  # Grey images are their RGB repeat.
  grey = x[..., :1]
  np.testing.assert_array_equal(
      perceptual.perceptual_loss(random_params, grey, y[..., :1], SMALL),
      perceptual.perceptual_loss(random_params, jnp.repeat(grey, 3, -1),
                                 jnp.repeat(y[..., :1], 3, -1), SMALL))
  # Frozen weights: the gradient reaches the images only.
  g_params, g_x = jax.grad(perceptual.perceptual_loss, argnums=(0, 1))(
      random_params, x, y, SMALL)
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(g_params))
  assert np.all(np.isfinite(g_x)) and np.any(g_x)


def test_load_params_reads_only_the_stem_and_folds_batch_norm(tmp_path):
  rng = np.random.default_rng(0)
  canonical = {}
  for name in perceptual.LAYERS + ("Mixed_5b/branch1x1",):
    cin, cout = (192, 64) if name.startswith("Mixed") else (3, 8)
    canonical[f"{name}/kernel"] = rng.normal(size=(1, 1, cin, cout))
    for stat in ("gamma", "beta", "mean"):
      canonical[f"{name}/bn_{stat}"] = rng.normal(size=cout)
    canonical[f"{name}/bn_var"] = rng.uniform(0.5, 2, cout)
  canonical = {k: v.astype(np.float32) for k, v in canonical.items()}
  np.savez(tmp_path / "w.npz", **canonical)
  params = perceptual.load_params("Conv2d_2a_3x3,Conv2d_1a_3x3",
                                  tmp_path / "w.npz")
  assert sorted(params["params"]) == ["Conv2d_1a_3x3", "Conv2d_2a_3x3"]
  full, _ = inception.params_from_weights(canonical)
  jax.tree.map(np.testing.assert_array_equal, params["params"],
               {k: full["params"][k] for k in params["params"]})


# The real network.


@pytest.fixture(scope="module")
def real_params():
  return perceptual.load_params(perceptual.LAYERS, WEIGHTS)


@requires_weights
def test_features_equal_the_full_networks_activations(real_params):
  canonical = weights.load_inception_weights(WEIGHTS)
  full, num_classes = inception.params_from_weights(canonical)
  images255 = (np.asarray(_images(1, 299)) + 1) * 127.5
  net = inception.InceptionV3(num_classes=num_classes)
  _, state = jax.jit(lambda p, x: net.apply(p, x, capture_intermediates=True))(
      full, inception.preprocess(images255))
  ours = perceptual.features(real_params, _images(1, 299), perceptual.LAYERS)
  for name in perceptual.LAYERS:
    np.testing.assert_allclose(
        ours[name], state["intermediates"][name]["__call__"][0],
        rtol=1e-5, atol=1e-5, err_msg=name)


@requires_weights
def test_real_features_rank_a_shift_above_noise(real_params):
  x = _images(2, 64)
  loss = jax.jit(lambda a, b: perceptual.perceptual_loss(
      real_params, a, b, perceptual.DEFAULT_LAYERS))
  assert float(loss(x, x)) == 0.0
  noise = 0.02 * jax.random.normal(jax.random.key(1), x.shape)
  shifted = jnp.roll(x, 4, axis=2)
  assert float(loss(x, shifted)) > 3 * float(loss(x, x + noise)) > 0
  np.testing.assert_allclose(loss(x[..., :1], shifted[..., :1]),
                             loss(jnp.repeat(x[..., :1], 3, -1),
                                  jnp.repeat(shifted[..., :1], 3, -1)),
                             rtol=1e-6)
  grad = jax.grad(loss)(x + noise, x)
  assert np.all(np.isfinite(grad)) and np.any(grad)


# The tasks.


def test_cyclegan_term_compares_reconstructions_with_inputs(monkeypatch,
                                                            random_params):
  """Generators = channel conversion: grey photos cycle exactly, colour
  ones lose their colour in the sketch domain."""
  task = cyclegan.CycleGANTask(_config("cyclegan"), random_params)
  out = {"ab": task.cb, "ba": task.ca}
  monkeypatch.setattr(task, "_g", lambda params, name, x:
                      cyclegan.to_channels(x, out[name]))
  monkeypatch.setattr(task, "_d", lambda params, name, x: jnp.ones(
      x.shape[:3]))
  grey, b = _images(2, 16, 1, seed=1), _images(2, 16, 1, seed=2)
  a = jnp.repeat(grey, 3, -1)
  _, (metrics, _, _) = task._g_loss(None, None, a, b)  # pylint: disable=protected-access
  # Luma of grey RGB is the grey value up to float rounding.
  np.testing.assert_allclose(metrics["g_perc_a"], 0.0, atol=1e-6)
  assert float(metrics["g_perc_b"]) == 0.0
  colour = a.at[..., 0].set(1.0)
  _, (metrics, _, _) = task._g_loss(None, None, colour, b)  # pylint: disable=protected-access
  rec = cyclegan.to_channels(cyclegan.to_channels(colour, 1), 3)
  np.testing.assert_allclose(
      metrics["g_perc_a"],
      perceptual.perceptual_loss(random_params, rec, colour, SMALL),
      rtol=1e-6)
  assert metrics["g_perc_a"] > 0.0
