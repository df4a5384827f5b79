"""Known-value tests for jaxgen.losses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import losses


def test_bce_known_values():
  # BCE(logit 0, target t) = log 2 for any t; BCE(l, 1) = log(1 + e^-l).
  np.testing.assert_allclose(losses.bce_with_logits(jnp.zeros(3), 0.3),
                             [math.log(2)] * 3, rtol=1e-6)
  np.testing.assert_allclose(losses.bce_with_logits(jnp.array([2.0]), 1.0),
                             [math.log1p(math.exp(-2.0))], rtol=1e-6)
  # Stable for large logits (no inf/nan).
  big = losses.bce_with_logits(jnp.array([1e4, -1e4]), jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(big, [1e4, 1e4], rtol=1e-6)


def test_kl_normal_known_values():
  assert float(losses.kl_normal(jnp.zeros((1, 5)), jnp.zeros((1, 5)))[0]) == 0
  # KL(N(1, e^0) || N(0,1)) = 0.5 per dim; KL(N(0, e^2)||N(0,1)) =
  # 0.5 (e^2 - 1 - 2) per dim.
  np.testing.assert_allclose(
      losses.kl_normal(jnp.ones((1, 4)), jnp.zeros((1, 4))), [2.0], rtol=1e-6)
  np.testing.assert_allclose(
      losses.kl_normal(jnp.zeros((1, 1)), jnp.full((1, 1), 2.0)),
      [0.5 * (math.e**2 - 3)], rtol=1e-6)
  # A spatial latent sums over all its positions and channels, per example.
  mean = jnp.stack([jnp.ones((2, 2, 3)), jnp.zeros((2, 2, 3))])
  np.testing.assert_allclose(
      losses.kl_normal(mean, jnp.zeros_like(mean)), [6.0, 0.0], rtol=1e-6)


def test_reconstruction_loss_per_example_sum():
  x = jnp.zeros((2, 4, 4, 1))
  np.testing.assert_allclose(losses.reconstruction_loss(x, x + 0.5, "bce"),
                             [16 * math.log(2)] * 2, rtol=1e-6)
  np.testing.assert_allclose(losses.reconstruction_loss(x, x + 0.5, "mse"),
                             [4.0, 4.0], rtol=1e-6)
  with pytest.raises(ValueError, match="valid: 'bce', 'mse'"):
    losses.reconstruction_loss(x, x, "l3")


def test_gan_losses_known_values():
  zeros = jnp.zeros((2, 3))
  # D outputs 0 everywhere: BCE D loss = 2 log 2, G loss = log 2.
  np.testing.assert_allclose(losses.gan_d_loss(zeros, zeros), [2 * math.log(2)]
                             * 2, rtol=1e-6)
  np.testing.assert_allclose(losses.gan_g_loss(zeros), [math.log(2)] * 2,
                             rtol=1e-6)
  # LSGAN: (1-1)^2 + 0^2 = 0 for a perfect D; G loss (0-1)^2 = 1.
  np.testing.assert_allclose(
      losses.gan_d_loss(jnp.ones((1,)), jnp.zeros((1,)), "lsgan"), [0.0])
  np.testing.assert_allclose(losses.gan_g_loss(jnp.zeros((1,)), "lsgan"),
                             [1.0])
  # Hinge: relu(1 - 2) + relu(1 + (-3)) = 0; relu(1 - 0) + relu(1 + 0) = 2.
  np.testing.assert_allclose(
      losses.gan_d_loss(jnp.array([2.0]), jnp.array([-3.0]), "hinge"), [0.0])
  np.testing.assert_allclose(losses.gan_d_loss(zeros, zeros, "hinge"), [2.0,
                                                                        2.0])
  np.testing.assert_allclose(losses.gan_g_loss(jnp.array([[1.5]]), "hinge"),
                             [-1.5])
  # Wasserstein critic: E[D(fake)] - E[D(real)] per example; G: -D(G(z)).
  np.testing.assert_allclose(
      losses.gan_d_loss(jnp.array([[2.0, 4.0]]), jnp.array([[1.0, -1.0]]),
                        "wgan"), [-3.0])
  np.testing.assert_allclose(losses.gan_g_loss(jnp.array([[1.5]]), "wgan"),
                             [-1.5])
  with pytest.raises(ValueError, match="valid: .*'hinge', 'wgan'"):
    losses.gan_g_loss(zeros, "w1")


def test_gan_losses_average_over_scales():
  # A multi-scale discriminator's list of logits: the mean of the per-scale
  # losses, each averaged over its own patches.
  fine = jnp.array([[[1.0], [3.0]]])      # [1, 2, 1]: 2 patches.
  coarse = jnp.array([[0.0]])             # [1, 1]: 1 patch.
  np.testing.assert_allclose(
      losses.gan_g_loss([fine, coarse], "lsgan"), [(2.0 + 1.0) / 2])
  np.testing.assert_allclose(
      # Fine: relu(1 - [1, 3]) + relu(1 + 0) = [1, 1]; coarse: 1 + 1.
      losses.gan_d_loss([fine, coarse], [0 * fine, coarse], "hinge"),
      [(1.0 + 2.0) / 2])
  np.testing.assert_allclose(
      losses.mean_sigmoid([jnp.zeros((2, 3)), jnp.full((1,), 1e4)]), 0.75)


def test_gan_loss_signs():
  # A D that tells real from fake has lower loss than one that is fooled.
  good = losses.gan_d_loss(jnp.array([5.0]), jnp.array([-5.0]))
  bad = losses.gan_d_loss(jnp.array([-5.0]), jnp.array([5.0]))
  assert good[0] < 0.02 < 10.0 < bad[0]
  # The generator's loss falls as D is fooled more.
  assert losses.gan_g_loss(jnp.array([3.0]))[0] < losses.gan_g_loss(
      jnp.array([-3.0]))[0]


def test_l1_and_sliced_wasserstein():
  a = jnp.zeros((3, 2, 2, 1))
  np.testing.assert_allclose(losses.l1(a, a + 0.25), [0.25] * 3)
  rng = jax.random.key(0)
  x = jax.random.normal(rng, (64, 8))
  assert float(losses.sliced_wasserstein(x, x, rng)) == 0.0
  # Shifting every point by c along all axes moves each projection by
  # c * sum(direction) -> distance grows with c.
  d1 = losses.sliced_wasserstein(x, x + 1.0, rng)
  d2 = losses.sliced_wasserstein(x, x + 2.0, rng)
  np.testing.assert_allclose(float(d2), 2 * float(d1), rtol=1e-5)
  assert float(d1) > 0.5


def test_classification_known_values():
  # Two classes: logits (0, log 3) give p = (1/4, 3/4).
  logits = jnp.array([[0.0, np.log(3.0)], [2.0, 0.0]])
  ce, correct = losses.classification(logits, jnp.array([1, 1]))
  np.testing.assert_allclose(ce, [-np.log(0.75), np.log(1 + np.e ** 2)],
                             rtol=1e-6)
  np.testing.assert_array_equal(correct, [1.0, 0.0])
