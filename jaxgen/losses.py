"""Loss functions shared by the model families.

All functions are pure, work on logits (never on probabilities, for numerical
stability) and return per-example values unless stated otherwise, so callers
decide how to reduce and weight them.
"""

import jax
import jax.numpy as jnp
import optax


def _per_example_mean(x):
  return jnp.mean(x.reshape(x.shape[0], -1), axis=-1)


def _per_example_sum(x):
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def bce_with_logits(logits, targets):
  """Element-wise binary cross-entropy of `targets` in [0, 1] given logits.

  Args:
    logits: any shape.
    targets: same shape (or broadcastable), values in [0, 1].

  Returns:
    The element-wise loss, same shape as `logits`.
  """
  targets = jnp.broadcast_to(targets, logits.shape).astype(logits.dtype)
  return optax.sigmoid_binary_cross_entropy(logits, targets)


def reconstruction_loss(logits_or_mean, targets, kind="bce"):
  """Per-example reconstruction loss summed over pixels.

  Args:
    logits_or_mean: decoder output: logits for "bce", the mean for "mse".
    targets: images in [0, 1], same shape.
    kind: "bce" (Bernoulli likelihood) or "mse" (squared error).

  Returns:
    [batch] summed loss per image.
  """
  if kind == "bce":
    return _per_example_sum(bce_with_logits(logits_or_mean, targets))
  if kind == "mse":
    return _per_example_sum(jnp.square(logits_or_mean - targets))
  raise ValueError(f"Unknown reconstruction loss {kind!r}; valid: 'bce', 'mse'.")


def kl_normal(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over latents.

  Args:
    mean: [batch, ...] (a vector or a spatial latent per example).
    logvar: the same shape.

  Returns:
    [batch] KL divergence in nats.
  """
  return 0.5 * _per_example_sum(
      jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)


GAN_LOSSES = ("bce", "lsgan", "hinge", "wgan")


def _over_scales(fn, *logits):
  """fn applied per discriminator scale and averaged.

  Multi-scale discriminators return a list of logits, one per scale; a
  single array is one scale.
  """
  if isinstance(logits[0], (list, tuple)):
    per_scale = [fn(*ls) for ls in zip(*logits)]
    return sum(per_scale) / len(per_scale)
  return fn(*logits)


def gan_d_loss(real_logits, fake_logits, kind="bce"):
  """Discriminator loss per example.

  Args:
    real_logits: D output on real data, [batch, ...] (patch outputs allowed),
      or a list of such outputs, one per scale (averaged).
    fake_logits: D output on generated data, same shape.
    kind: "bce" (standard GAN), "lsgan" (least squares, targets 1/0),
      "hinge" or "wgan" (the Wasserstein critic loss, E[D(fake)] - E[D(real)];
      pair it with `gan.gp_weight` > 0 or spectral normalisation, which keep
      the critic Lipschitz).

  Returns:
    [batch] loss, averaged over any patch dimensions and scales.
  """
  def one(real_logits, fake_logits):
    if kind == "bce":
      loss = (bce_with_logits(real_logits, 1.0) +
              bce_with_logits(fake_logits, 0.0))
    elif kind == "lsgan":
      loss = jnp.square(real_logits - 1.0) + jnp.square(fake_logits)
    elif kind == "hinge":
      loss = jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits)
    elif kind == "wgan":
      loss = fake_logits - real_logits
    else:
      raise ValueError(f"Unknown GAN loss {kind!r}; valid: {GAN_LOSSES}.")
    return _per_example_mean(loss)
  return _over_scales(one, real_logits, fake_logits)


def gan_g_loss(fake_logits, kind="bce"):
  """Generator loss per example (non-saturating for "bce").

  Args:
    fake_logits: D output on generated data, or a list of outputs, one per
      scale (averaged).
    kind: "bce" (non-saturating -log D(G(z))), "lsgan", "hinge" or "wgan"
      (both -D(G(z))).

  Returns:
    [batch] loss, averaged over any patch dimensions and scales.
  """
  def one(fake_logits):
    if kind == "bce":
      loss = bce_with_logits(fake_logits, 1.0)
    elif kind == "lsgan":
      loss = jnp.square(fake_logits - 1.0)
    elif kind in ("hinge", "wgan"):
      loss = -fake_logits
    else:
      raise ValueError(f"Unknown GAN loss {kind!r}; valid: {GAN_LOSSES}.")
    return _per_example_mean(loss)
  return _over_scales(one, fake_logits)


def mean_sigmoid(logits):
  """Mean of sigmoid(logits) over everything (all scales of a list).

  The "D(x)" probabilities the GAN families report as metrics.
  """
  if isinstance(logits, (list, tuple)):
    return sum(mean_sigmoid(l) for l in logits) / len(logits)
  return jnp.mean(jax.nn.sigmoid(logits.astype(jnp.float32)))


def l1(x, y):
  """Per-example mean absolute error."""
  return _per_example_mean(jnp.abs(x - y))


def classification(logits, labels):
  """Per-example softmax cross-entropy and correctness of class logits.

  Args:
    logits: [b, num_classes].
    labels: [b] int.

  Returns:
    (cross-entropy [b], correct [b] float32: 1 where argmax == label).
  """
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels),
          (jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def halved_d_loss(real_logits, fake_logits, kind="bce"):
  """0.5 * discriminator loss, mean over batch and patches (pix2pix, CycleGAN).

  Halving slows D relative to G, as both reference implementations do.

  Args:
    real_logits: D output on real data.
    fake_logits: D output on generated data.
    kind: one of GAN_LOSSES (see `gan_d_loss`).

  Returns:
    Scalar loss.
  """
  return 0.5 * jnp.mean(gan_d_loss(real_logits, fake_logits, kind))


def adversarial_l1_loss(fake_logits, fake, target, kind="bce",
                        l1_weight=100.0, l1_mask=None):
  """Generator loss adv + l1_weight * L1 of a paired translation (pix2pix).

  Args:
    fake_logits: D output on the generated images.
    fake: generated images.
    target: the paired ground truth (same scale as `fake`).
    kind: adversarial loss kind (see `gan_g_loss`).
    l1_weight: lambda of the L1 term.
    l1_mask: optional [batch] 0/1 weights: the L1 averages over the examples
      with weight 1 only (those with a paired target; 0 if there are none).

  Returns:
    (total, adversarial, l1), each a scalar mean.
  """
  adv = jnp.mean(gan_g_loss(fake_logits, kind))
  dist = l1(fake, target)
  if l1_mask is None:
    dist = jnp.mean(dist)
  else:
    dist = jnp.sum(dist * l1_mask) / jnp.maximum(jnp.sum(l1_mask), 1.0)
  return adv + l1_weight * dist, adv, dist


def sliced_wasserstein(x, y, rng, num_projections=128):
  """Sliced 1-Wasserstein distance between two equal-size sets of vectors.

  Used as a cheap set-level distance between generated and real images when
  Inception features are not available.

  Args:
    x: [n, ...] samples, flattened internally.
    y: [n, ...] samples, same shape.
    rng: PRNG key for the random projection directions.
    num_projections: number of random unit directions.

  Returns:
    Scalar distance (mean over projections of the 1-D Wasserstein distance).
  """
  x = x.reshape(x.shape[0], -1).astype(jnp.float32)
  y = y.reshape(y.shape[0], -1).astype(jnp.float32)
  dirs = jax.random.normal(rng, (x.shape[1], num_projections))
  dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
  px = jnp.sort(x @ dirs, axis=0)
  py = jnp.sort(y @ dirs, axis=0)
  return jnp.mean(jnp.abs(px - py))


# Discriminator regularisers and the feature-matching generator term.
#
# `d_fn` below maps a batch of images to D's output: logits [b], patch logits
# [b, h, w] or a list of them (one per scale). Its per-example output is the
# sum over patches and scales, so each example's gradient is taken w.r.t.
# its own input only (exactly so for per-example normalisation; with
# BatchNorm in training mode the examples share the batch statistics and the
# gradient includes that coupling).


def _summed_output(d_fn, x):
  out = d_fn(x)
  outs = out if isinstance(out, (list, tuple)) else [out]
  return sum(jnp.sum(o.astype(jnp.float32)) for o in outs)


def _per_example_grad_sq_norm(d_fn, x):
  grads = jax.grad(lambda y: _summed_output(d_fn, y))(x)
  return _per_example_sum(jnp.square(grads.astype(jnp.float32)))


def gradient_penalty(d_fn, real, fake, rng):
  """WGAN-GP (Gulrajani et al. 2017): (||grad_x d_fn(x_hat)||_2 - 1)^2.

  x_hat = eps * real + (1 - eps) * fake with eps ~ U(0, 1) per example; the
  gradient norm is over all of an example's pixels.

  Args:
    d_fn: images -> D output (see above).
    real: [b, ...] real images.
    fake: [b, ...] generated images (treated as constants).
    rng: PRNG key for eps.

  Returns:
    [b] penalty per example (the caller multiplies by the weight lambda).
  """
  real = jax.lax.stop_gradient(real)
  fake = jax.lax.stop_gradient(fake)
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1))
  x_hat = eps * real + (1.0 - eps) * fake.astype(real.dtype)
  # The tiny constant keeps the norm's gradient finite at a zero gradient.
  norm = jnp.sqrt(_per_example_grad_sq_norm(d_fn, x_hat) + 1e-12)
  return jnp.square(norm - 1.0)


def r1_penalty(d_fn, real):
  """R1 (Mescheder et al. 2018): ||grad_x d_fn(x)||^2 on real images.

  The R1 regulariser is (gamma / 2) * E[this]; the caller applies gamma / 2
  (and, for lazy regularisation, the interval).

  Args:
    d_fn: images -> D output (see above).
    real: [b, ...] real images.

  Returns:
    [b] squared gradient norm per example.
  """
  return _per_example_grad_sq_norm(d_fn, jax.lax.stop_gradient(real))


def feature_matching(real_feats, fake_feats, paired=False):
  """Distance between D's features of real and generated images.

  Unpaired (Salimans et al. 2016): per layer, the squared distance between
  the batch means of the real and the fake features, averaged over feature
  elements. Paired (pix2pixHD, Wang et al. 2018): per layer and example, the
  mean absolute difference of the features of (condition, real) and
  (condition, fake). Both are averaged over layers.

  Args:
    real_feats: list of [b, ...] feature maps, one per D layer (hold them
      constant: the term trains the generator).
    fake_feats: list of the same shapes.
    paired: the pix2pixHD per-example L1 form.

  Returns:
    Scalar (unpaired) or [b] (paired).
  """
  if len(real_feats) != len(fake_feats) or not real_feats:
    raise ValueError(f"feature_matching needs equally many (>0) layers, got "
                     f"{len(real_feats)} and {len(fake_feats)}.")
  dists = []
  for r, f in zip(real_feats, fake_feats):
    r, f = r.astype(jnp.float32), f.astype(jnp.float32)
    if paired:
      dists.append(l1(f, r))
    else:
      dists.append(jnp.mean(jnp.square(jnp.mean(f, 0) - jnp.mean(r, 0))))
  return sum(dists) / len(dists)
