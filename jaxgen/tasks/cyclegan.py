"""CycleGAN: unpaired translation between photos (A, RGB) and sketches (B).

Batches hold {"a": [b, s, s, 3], "b": [b, s, s, 1]} in [-1, 1], drawn
independently (jaxgen/data/unpaired.py). Networks (Zhu et al. 2017, and the
defaults of their PyTorch reference implementation):

  G_AB: A -> B and G_BA: B -> A, ResNet generators (models/resnet.py;
        `model.generator` = "unet" for the pix2pix U-Net instead);
  D_A judges domain A images (real A vs G_BA(b)), D_B domain B images; both
        unconditional 70x70 PatchGANs with instance norm.

Losses (float32 whatever `model.dtype`; adv from `gan.loss`, LSGAN default):
  G: adv(D_B(G_AB(a))) + adv(D_A(G_BA(b)))
     + lambda_a |G_BA(G_AB(a)) - a| + lambda_b |G_AB(G_BA(b)) - b|
     + identity * (lambda_b |G_AB(rgb(b)) - b| + lambda_a |G_BA(grey(a)) - a|)
  D_A: 0.5 [adv(D_A(a), real) + adv(D_A(pool_A(G_BA(b))), fake)], D_B alike.

Identity across 3 <-> 1 channels: a generator's identity input is the
target-domain image converted to the generator's input channels: G_AB
(photo -> sketch) gets the sketch repeated to RGB and should return it
unchanged; G_BA (sketch -> photo) gets the photo's luma and should return the
photo (so it asks G_BA to keep the tones it is given and guess only colour).
`loss.identity` = 0 switches the term off.

Updates, as the reference: one forward of both generators, the generators'
step against the current discriminators, then the discriminators' step on
the detached fakes mixed through the image pools (jaxgen/tasks/image_pool.py,
held in the state). G_AB and G_BA share one Adam, as do D_A and D_B; both use
`schedule="epoch_linear"` (constant for n_epochs, then linear decay to 0 over
n_epochs_decay, counted in epochs of the data: see jaxgen/optim.py).
`gan.d_steps` / `gan.g_steps` alternate as in the other GAN families.

EMA generators (`gan.ema_decay` > 0, jaxgen/tasks/gan_base.py): one average
of both generators' params (the state's `g` holds both), updated after
every step, is what `translate` (hence samples, evaluation, FID and the
"best" checkpoint) uses.

Normalisation: "instance" (default) or "none"; BatchNorm is not offered
(with the reference's batch size 1 it would be instance norm with running
statistics added, and four networks' statistics would have to be threaded
through each other's passes).

Evaluation per test image: cycle errors, and when the test data is paired
(`data.paired_eval`: CUFS layout, procedural faces) L1/PSNR/SSIM of
G_BA(b) against the true photo ("*_BtoA") and of G_AB(a) against the true
sketch ("*_AtoB"), on the [0, 1] scale.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp

from jaxgen import backend
from jaxgen import losses, optim
from jaxgen.evaluation import paired as paired_eval
from jaxgen.models import patchgan, resnet, unet
from jaxgen.tasks import base
from jaxgen.tasks import gan_base
from jaxgen.tasks import image_pool

GENERATORS = ("resnet", "unet")
NORMS = ("instance", "none")
DIRECTIONS = ("AtoB", "BtoA")


@flax.struct.dataclass
class CycleGANState:
  """Both generators (g.params["ab"/"ba"]), both discriminators
  (d.params["a"/"b"]), the two fake pools, the shared step and the EMA
  generators (gan_base.ema_init; None when off)."""
  step: jax.Array
  g: base.TrainState
  d: base.TrainState
  pool_a: image_pool.ImagePool
  pool_b: image_pool.ImagePool
  ema: Any = None


to_channels = base.to_channels


class CycleGANTask(base.Task):
  """Unpaired two-way translation (see the module docstring)."""

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    gan_base.check_alternation(config.gan)
    self.ema_decay = gan_base.ema_decay(config)
    if m.norm not in NORMS:
      raise ValueError(f"Unknown model.norm {m.norm!r} for CycleGAN; valid: "
                       f"{NORMS}.")
    self.ca, self.cb = int(config.data.a_channels), int(config.data.b_channels)
    self.g_ab = self._generator(self.cb)
    self.g_ba = self._generator(self.ca)
    self.disc = patchgan.PatchGAN(
        width=m.d_width, max_width=m.max_width, n_layers=m.n_layers,
        norm=m.norm, downsample_impl=m.downsample_impl, dtype=self.dtype)
    self.g_updates, self.d_updates = gan_base.updates_per_network(
        config.gan, config.train.num_steps)
    self._samples_jit = backend.jit(self._samples)

  @property
  def dtype(self):
    return base.resolve_dtype(self.config.model.get("dtype", "auto"))

  def _generator(self, out_channels):
    m = self.config.model
    if m.generator == "resnet":
      return resnet.ResnetGenerator(
          out_channels=out_channels, width=m.g_width, num_blocks=m.num_blocks,
          norm=m.norm, upsample_impl=m.upsample_impl,
          downsample_impl=m.downsample_impl, dtype=self.dtype)
    if m.generator == "unet":
      return unet.UNet(
          out_channels=out_channels, width=m.g_width, max_width=m.max_width,
          dropout=0.0, norm=m.norm, upsample_impl=m.upsample_impl,
          downsample_impl=m.downsample_impl, dtype=self.dtype)
    raise ValueError(f"Unknown model.generator {m.generator!r}; valid: "
                     f"{GENERATORS}.")

  def example_batch(self, num=2):
    res = self.config.data.crop_size
    return {"a": jnp.zeros((num, res, res, self.ca), jnp.float32),
            "b": jnp.zeros((num, res, res, self.cb), jnp.float32)}

  def init_state(self, rng, batch=None):
    del batch  # Shapes come from the config.
    ex = self.example_batch()
    keys = jax.random.split(base.rbg_key(rng), 4)
    init = lambda module, key, *x: jax.jit(
        functools.partial(module.init, train=False))(key, *x)["params"]
    g_params = {"ab": init(self.g_ab, keys[0], ex["a"]),
                "ba": init(self.g_ba, keys[1], ex["b"])}
    d_params = {"a": init(self.disc, keys[2], None, ex["a"]),
                "b": init(self.disc, keys[3], None, ex["b"])}
    size = int(self.config.pool.size)
    g = base.TrainState.create(apply_fn=None, params=g_params,
                               tx=optim.make_optimizer(self.config.g_optim,
                                                       self.g_updates))
    return CycleGANState(
        step=jnp.zeros((), jnp.int32), g=g,
        d=base.TrainState.create(apply_fn=None, params=d_params,
                                 tx=optim.make_optimizer(self.config.d_optim,
                                                         self.d_updates)),
        pool_a=image_pool.init_pool(size, ex["a"].shape[1:]),
        pool_b=image_pool.init_pool(size, ex["b"].shape[1:]),
        ema=gan_base.ema_init(g, self.ema_decay))

  # Pieces.

  def _g(self, params, name, x):
    module = self.g_ab if name == "ab" else self.g_ba
    return module.apply({"params": params[name]}, x, train=True)

  def _d(self, params, name, x):
    return self.disc.apply({"params": params[name]}, None, x, train=True)

  def translate(self, state, images, direction: str = "BtoA"):
    """Translates [b, h, w, c] images in [-1, 1] ("AtoB" or "BtoA").

    Inputs of the other channel count are converted first (a colour sketch
    to luma for BtoA, a grey photo to RGB for AtoB).

    Args:
      state: a CycleGANState.
      images: [b, h, w, c] in [-1, 1].
      direction: "AtoB" (photo -> sketch) or "BtoA" (sketch -> photo).

    Returns:
      [b, h, w, c_out] float32 in [-1, 1], from the EMA generators when
      `gan.ema_decay` > 0.
    """
    if direction not in DIRECTIONS:
      raise ValueError(f"Unknown direction {direction!r}; valid: "
                       f"{DIRECTIONS}.")
    name, cin = ("ab", self.ca) if direction == "AtoB" else ("ba", self.cb)
    return self._g(gan_base.sampling_generator(state).params, name,
                   to_channels(images, cin))

  def translate_batch(self, state, batch, rng):
    """Sketch -> photo outputs in [0, 1] for the batch's "b" images."""
    del rng
    return base.to_unit(self.translate(state, batch["b"], "BtoA"))

  def paired_targets(self, batch):
    """The true photos of paired test data (see `data.paired_eval`)."""
    return base.to_unit(batch["a"])

  def translations(self):
    """Both directions: outputs and the real images of the target domain."""
    def fns(direction, src, dst):
      return (lambda state, batch, rng: base.to_unit(
          self.translate(state, batch[src], direction)),
              lambda batch: base.to_unit(batch[dst]))
    return {"BtoA": fns("BtoA", "b", "a"), "AtoB": fns("AtoB", "a", "b")}

  def input_shape(self, direction="BtoA"):
    key = "a" if direction == "AtoB" else "b"
    return self.example_batch(1)[key].shape[1:]

  # The step.

  def _g_loss(self, g_params, d_params, a, b):
    cfg = self.config.loss
    kind = self.config.gan.loss
    fake_b = self._g(g_params, "ab", a)
    fake_a = self._g(g_params, "ba", b)
    rec_a = self._g(g_params, "ba", fake_b)
    rec_b = self._g(g_params, "ab", fake_a)
    adv_ab = jnp.mean(losses.gan_g_loss(self._d(d_params, "b", fake_b), kind))
    adv_ba = jnp.mean(losses.gan_g_loss(self._d(d_params, "a", fake_a), kind))
    cyc_a = cfg.lambda_a * jnp.mean(losses.l1(rec_a, a))
    cyc_b = cfg.lambda_b * jnp.mean(losses.l1(rec_b, b))
    total = adv_ab + adv_ba + cyc_a + cyc_b
    metrics = {"g_ab": adv_ab, "g_ba": adv_ba, "cycle_a": cyc_a,
               "cycle_b": cyc_b}
    if cfg.identity > 0:
      idt_b = self._g(g_params, "ab", to_channels(b, self.ca))
      idt_a = self._g(g_params, "ba", to_channels(a, self.cb))
      metrics["idt_b"] = cfg.identity * cfg.lambda_b * jnp.mean(
          losses.l1(idt_b, b))
      metrics["idt_a"] = cfg.identity * cfg.lambda_a * jnp.mean(
          losses.l1(idt_a, a))
      total = total + metrics["idt_a"] + metrics["idt_b"]
    metrics["g_loss"] = total
    return total, (metrics, fake_a, fake_b)

  def _d_loss(self, d_params, a, b, fake_a, fake_b):
    kind = self.config.gan.loss
    d_a = losses.halved_d_loss(self._d(d_params, "a", a),
                               self._d(d_params, "a", fake_a), kind)
    d_b = losses.halved_d_loss(self._d(d_params, "b", b),
                               self._d(d_params, "b", fake_b), kind)
    return d_a + d_b, {"d_a": d_a, "d_b": d_b}

  def train_step(self, state, batch, rng):
    gan = self.config.gan
    a, b = batch["a"], batch["b"]
    (_, (g_metrics, fake_a, fake_b)), g_grads = jax.value_and_grad(
        self._g_loss, has_aux=True)(state.g.params, state.d.params, a, b)
    fake_a, fake_b = jax.lax.stop_gradient((fake_a, fake_b))

    def g_update(s, apply):
      if apply:
        s = s.replace(g=gan_base.apply_updates(s.g, g_grads))
      return s, {"g_lr": gan_base.lr_metric(self.config.g_optim,
                                            self.g_updates, s.g)}

    def d_update(s, apply):
      pool_a, mixed_a = image_pool.query(s.pool_a, fake_a, rng_a,
                                         self.config.pool.swap_prob)
      pool_b, mixed_b = image_pool.query(s.pool_b, fake_b, rng_b,
                                         self.config.pool.swap_prob)
      (_, metrics), grads = jax.value_and_grad(self._d_loss, has_aux=True)(
          s.d.params, a, b, mixed_a, mixed_b)
      if apply:
        s = s.replace(d=gan_base.apply_updates(s.d, grads), pool_a=pool_a,
                      pool_b=pool_b)
      metrics["d_lr"] = gan_base.lr_metric(self.config.d_optim,
                                           self.d_updates, s.d)
      return s, metrics

    rng_a, rng_b = jax.random.split(rng)
    state, gm = gan_base.alternate(g_update, gan.d_steps, gan.d_steps - 1,
                                   state)
    state, dm = gan_base.alternate(d_update, gan.g_steps, 0, state)
    state = gan_base.with_ema(state.replace(step=state.step + 1),
                              self.ema_decay)
    return state, {**g_metrics, **gm, **dm}

  def eval_step(self, state, batch, rng):
    del rng
    a, b = batch["a"], batch["b"]
    fake_b = self.translate(state, a, "AtoB")
    fake_a = self.translate(state, b, "BtoA")
    rec_a = self.translate(state, fake_b, "BtoA")
    rec_b = self.translate(state, fake_a, "AtoB")
    out = {"cycle_a": losses.l1(base.to_unit(rec_a), base.to_unit(a)),
           "cycle_b": losses.l1(base.to_unit(rec_b), base.to_unit(b))}
    if self.config.data.get("paired_eval", False):
      for direction, fake, real in (("BtoA", fake_a, a), ("AtoB", fake_b, b)):
        for k, v in paired_eval.batch_metrics(base.to_unit(fake),
                                              base.to_unit(real)).items():
          out[f"{k}_{direction}"] = v
    return out

  def samples(self, state, batch, rng):
    return self._samples_jit(state, batch, rng)

  def _samples(self, state, batch, rng):
    del rng
    a, b = batch["a"], batch["b"]
    fake_b = self.translate(state, a, "AtoB")
    fake_a = self.translate(state, b, "BtoA")
    rows = {"a_to_b": [a, fake_b, self.translate(state, fake_b, "BtoA")],
            "b_to_a": [b, fake_a, self.translate(state, fake_a, "AtoB")]}
    return {name: base.to_unit(base.interleave(
        [to_channels(x, 3) for x in cols]))
            for name, cols in rows.items()}

  def grid_columns(self, name):
    del name
    return 3

