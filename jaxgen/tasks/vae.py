"""VAE task: negative ELBO = reconstruction + beta * KL, with KL warm-up.

Reported per image (summed over pixels, nats) and per pixel: `recon`,
`recon_per_pixel`, `kl` and `elbo` (the negative ELBO, lower is better).
Evaluation also reports `ink_f1`, whether the strokes survive the round
trip: the F1 score of the ink pixels (value > 0.5) of the reconstruction
from the posterior mean against those of the input, per image. A blurred
grey smear scores near 0 even at a fair `recon`, because none of its pixels
reaches the ink level; a reconstruction with the strokes in place scores
near 1.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import losses, optim
from jaxgen.models import vae as vae_model
from jaxgen.tasks import base


class VAETask(base.Task):
  """Convolutional VAE on single images (`batch["image"]` in [0, 1])."""

  def __init__(self, config):
    super().__init__(config)
    m, d = config.model, config.data
    latent_res = m.get("latent_res", 0)  # Stored configs before it: 0.
    self.model = vae_model.VAE(
        res=d.res, channels=d.channels, latent_dim=m.latent_dim,
        width=m.width, max_width=m.max_width,
        upsample_impl=m.get("upsample_impl"),
        downsample_impl=m.get("downsample_impl"),
        latent_res=latent_res)
    self.latent_shape = vae_model.latent_shape(d.res, m.latent_dim, latent_res)

  def example_batch(self, num=2):
    d = self.config.data
    return {"image": jnp.zeros((num, d.res, d.res, d.channels), jnp.float32)}

  def init_state(self, rng, batch=None):
    del batch  # Shapes come from the config.
    params_rng, latent_rng = jax.random.split(rng)
    variables = jax.jit(self.model.init)(
        {"params": params_rng, "latent": latent_rng},
        self.example_batch()["image"])
    tx = optim.make_optimizer(self.config.optim, self.config.train.num_steps)
    return base.create_train_state(self.model, variables, tx)

  def _beta(self, step):
    cfg = self.config.loss
    if not cfg.warmup_steps:
      return jnp.asarray(cfg.beta, jnp.float32)
    return cfg.beta * jnp.minimum(1.0, step / cfg.warmup_steps)

  def _terms(self, params, x, rng):
    """Per-image reconstruction and KL terms, and the posterior mean."""
    logits, mean, logvar = self.model.apply(
        {"params": params}, x, rngs={"latent": rng})
    recon = losses.reconstruction_loss(logits, x, self.config.loss.recon)
    kl = losses.kl_normal(mean, logvar)
    return recon, kl, mean

  def train_step(self, state, batch, rng):
    x = batch["image"]
    beta = self._beta(state.step)

    def loss_fn(params):
      recon, kl, _ = self._terms(params, x, rng)
      return jnp.mean(recon + beta * kl), (recon, kl)

    (loss, (recon, kl)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    pixels = np.prod(x.shape[1:])
    return state, {
        "loss": loss, "recon": jnp.mean(recon),
        "recon_per_pixel": jnp.mean(recon) / pixels, "kl": jnp.mean(kl),
        "elbo": jnp.mean(recon + kl), "beta": beta,
    }

  def eval_step(self, state, batch, rng):
    x = batch["image"]
    recon, kl, mean = self._terms(state.params, x, rng)
    return {"recon": recon, "recon_per_pixel": recon / np.prod(x.shape[1:]),
            "kl": kl, "elbo": recon + kl,
            "ink_f1": ink_f1(self.decode(state, mean), x)}

  def samples(self, state, batch, rng):
    return _samples(self.model, state.params, batch["image"], rng,
                    self.latent_shape)

  def generate(self, state, rng, num):
    return self.decode(state, jax.random.normal(
        rng, (num,) + self.latent_shape))

  def encode(self, state, images):
    """Posterior (mean, log-variance), each [n, *self.latent_shape].

    Args:
      state: the VAE's state.
      images: [n, res, res, channels] in [0, 1], as the data gives them.

    Returns:
      (mean, logvar); the mean is the image's point in latent space.
    """
    return self.model.apply({"params": state.params}, images,
                            method=vae_model.VAE.encode)

  def decode(self, state, z):
    """Images [n, res, res, channels] in [0, 1] (Bernoulli means) of z."""
    return jax.nn.sigmoid(self.model.apply({"params": state.params}, z,
                                           method=vae_model.VAE.decode))

  def grid_columns(self, name):
    return {"interpolation": 8, "reconstruction": 8}.get(name, 8)


def ink_f1(recon, target, threshold=0.5):
  """Per-image F1 score of the ink pixels of `recon` against `target`.

  Args:
    recon: [n, h, w, c] reconstructions in [0, 1].
    target: [n, h, w, c] inputs in [0, 1] (ink bright, as the data gives it).
    threshold: the ink level.

  Returns:
    [n] F1 scores in [0, 1]; 1 for an image without ink reconstructed
    without ink.
  """
  pred = (recon > threshold).astype(jnp.float32)
  true = (target > threshold).astype(jnp.float32)
  axes = tuple(range(1, recon.ndim))
  hits = jnp.sum(pred * true, axes)
  total = jnp.sum(pred, axes) + jnp.sum(true, axes)
  return jnp.where(total > 0, 2 * hits / jnp.maximum(total, 1), 1.0)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _samples(model, params, x, rng, latent_shape):
  """Reconstructions (input above output), prior samples, interpolations."""
  v = {"params": params}
  logits, mean, _ = model.apply(v, x, sample=False)
  n = min(x.shape[0], 8)
  recon = jnp.stack([x[:n], jax.nn.sigmoid(logits[:n])]).reshape(
      (2 * n,) + x.shape[1:])
  z = jax.random.normal(rng, (x.shape[0],) + latent_shape)
  prior = jax.nn.sigmoid(model.apply(v, z, method=vae_model.VAE.decode))
  # Rows of 8 steps between pairs of posterior means (linear in z).
  pairs = max(1, min(4, x.shape[0] // 2))
  t = jnp.linspace(0.0, 1.0, 8).reshape((1, 8) + (1,) * len(latent_shape))
  a, b = mean[:pairs], mean[pairs:2 * pairs] if x.shape[0] > 1 else mean[:1]
  zs = (a[:, None] * (1 - t) + b[:, None] * t).reshape((-1,) + latent_shape)
  interp = jax.nn.sigmoid(model.apply(v, zs, method=vae_model.VAE.decode))
  return {"reconstruction": recon, "prior": prior, "interpolation": interp}
