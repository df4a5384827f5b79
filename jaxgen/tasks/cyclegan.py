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
     + perceptual_weight * (perc(G_BA(G_AB(a)), a) + perc(G_AB(G_BA(b)), b))
  D_A: 0.5 [adv(D_A(a), real) + adv(D_A(pool_A(G_BA(b))), fake)], D_B alike.

Identity across 3 <-> 1 channels: a generator's identity input is the
target-domain image converted to the generator's input channels: G_AB
(photo -> sketch) gets the sketch repeated to RGB and should return it
unchanged; G_BA (sketch -> photo) gets the photo's luma and should return the
photo (so it asks G_BA to keep the tones it is given and guess only colour).
`loss.identity` = 0 switches the term off.

perc is the L1 distance of early FID-Inception features of a cycle
reconstruction and its input (jaxgen/perceptual.py; grey sketches are
repeated to RGB); `gan.perceptual_weight` = 0, the default, switches it off,
> 0 needs the evaluation weights, `gan.perceptual_layers` picks the maps.
Metrics g_perc_a and g_perc_b are the unweighted distances.

Updates, as the reference: one forward of both generators, the generators'
step against the current discriminators, then the discriminators' step on
the detached fakes mixed through the image pools (jaxgen/tasks/image_pool.py,
held in the state). G_AB and G_BA share one Adam, as do D_A and D_B; both use
`schedule="epoch_linear"` (constant for n_epochs, then linear decay to 0 over
n_epochs_decay, counted in epochs of the data: see jaxgen/optim.py).
`gan.d_steps` / `gan.g_steps` alternate as in the other GAN families.

Stability options (`config.gan`, jaxgen/tasks/regularizers.py) act per
discriminator: `diffaug` on everything D_A and D_B see (pool images
included), GP / R1 on each (d_gp_a, d_r1_b, ...); `feature_matching` adds
G_AB against D_B's features and G_BA against D_A's (g_fm_ab, g_fm_ba).

Discriminator options (jaxgen/models/patchgan.py; off by default):
`gan.d_spectral_norm` spectrally normalises every weight of D_A and D_B;
their power-iteration state is `state.d.batch_stats` ({"a", "b"}; None
without it), updated by the D step and checkpointed. `gan.d_scales` = k > 1
makes each a k-scale PatchGAN (pix2pixHD) returning a list of logit maps,
which the losses average; the pools hold images, so only the losses see it.

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
from jaxgen import losses, optim, perceptual
from jaxgen.evaluation import paired as paired_eval
from jaxgen.models import patchgan, resnet, unet
from jaxgen.tasks import base
from jaxgen.tasks import gan_base
from jaxgen.tasks import image_pool
from jaxgen.tasks import regularizers

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


def _one_d(d_vars, name):
  """D_name's variables out of both discriminators' ({"a", "b"} per
  collection)."""
  return {col: tree[name] for col, tree in d_vars.items()}


class CycleGANTask(base.Task):
  """Unpaired two-way translation (see the module docstring)."""

  def __init__(self, config, perceptual_params=None):
    """Builds the models; `perceptual_params` replaces the loaded feature
    weights of the perceptual term (tests; see jaxgen/perceptual.py)."""
    super().__init__(config)
    m = config.model
    gan_base.check_alternation(config.gan)
    gan_base.check_separate_batches(config.gan, "cyclegan")
    self.reg = regularizers.Regularizers(config.gan)
    self.perceptual = perceptual.from_config(
        config.gan, config.data.crop_size, perceptual_params)
    self.ema_decay = gan_base.ema_decay(config)
    if m.norm not in NORMS:
      raise ValueError(f"Unknown model.norm {m.norm!r} for CycleGAN; valid: "
                       f"{NORMS}.")
    self.ca, self.cb = int(config.data.a_channels), int(config.data.b_channels)
    self.g_ab = self._generator(self.cb)
    self.g_ba = self._generator(self.ca)
    patchgan.check_scales(config.data.crop_size, m.n_layers,
                          config.gan.get("d_scales", 1))
    self.disc = patchgan.discriminator(
        config.gan.get("d_scales", 1), width=m.d_width, max_width=m.max_width,
        n_layers=m.n_layers, norm=m.norm, downsample_impl=m.downsample_impl,
        spectral_norm=config.gan.get("d_spectral_norm", False),
        dtype=self.dtype)
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
        functools.partial(module.init, train=False))(key, *x)
    g_params = {"ab": init(self.g_ab, keys[0], ex["a"])["params"],
                "ba": init(self.g_ba, keys[1], ex["b"])["params"]}
    d_vars = {"a": init(self.disc, keys[2], None, ex["a"]),
              "b": init(self.disc, keys[3], None, ex["b"])}
    d_params = {k: v["params"] for k, v in d_vars.items()}
    # Spectral normalisation's state; BatchNorm is not offered here.
    d_stats = ({k: v["batch_stats"] for k, v in d_vars.items()}
               if "batch_stats" in d_vars["a"] else None)
    size = int(self.config.pool.size)
    g = base.TrainState.create(apply_fn=None, params=g_params,
                               tx=optim.make_optimizer(self.config.g_optim,
                                                       self.g_updates))
    return CycleGANState(
        step=jnp.zeros((), jnp.int32), g=g,
        d=base.TrainState.create(apply_fn=None, params=d_params,
                                 tx=optim.make_optimizer(self.config.d_optim,
                                                         self.d_updates),
                                 batch_stats=d_stats),
        pool_a=image_pool.init_pool(size, ex["a"].shape[1:]),
        pool_b=image_pool.init_pool(size, ex["b"].shape[1:]),
        ema=gan_base.ema_init(g, self.ema_decay))

  def load_pretrained(self, state):
    """Reads the perceptual weights (a missing file stops a fresh start
    before it trains; a stored run loads without them)."""
    if self.perceptual:
      self.perceptual.load()
    return state

  # Pieces.

  def _g(self, params, name, x):
    module = self.g_ab if name == "ab" else self.g_ba
    return module.apply({"params": params[name]}, x, train=True)

  def _d_apply(self, d_vars, name, x, disc=None):
    """D_name(x) in train mode: (logits, D_name's new batch_stats or None).

    Args:
      d_vars: both discriminators' variables, `state.d.variables()`:
        {"params": {"a", "b"}}, plus {"batch_stats": {"a", "b"}} (spectral
        normalisation's state) with `gan.d_spectral_norm`.
      name: "a" or "b".
      x: images.
      disc: the module to apply (default `self.disc`; penalties pass
        `regularizers.for_penalties(self.disc)`).

    Returns:
      The logits (a list for several scales) and, with spectral
      normalisation, D_name's state with this call's power iteration.
    """
    logits, stats, _ = regularizers.apply_d(
        self.disc if disc is None else disc, _one_d(d_vars, name), None, x,
        train=True)
    return logits, stats

  def _d(self, d_vars, name, x, disc=None):
    """D_name(x) logits in train mode (state updates dropped)."""
    return self._d_apply(d_vars, name, x, disc)[0]

  def _d_features(self, d_vars, name, x):
    """D_name's intermediate features of x in train mode (feature matching)."""
    return regularizers.apply_d(self.disc, _one_d(d_vars, name), None, x,
                                train=True, features=True)[2]

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

  def _g_loss(self, g_params, d_vars, a, b, rng=None):
    cfg = self.config.loss
    kind = self.config.gan.loss
    fake_b = self._g(g_params, "ab", a)
    fake_a = self._g(g_params, "ba", b)
    rec_a = self._g(g_params, "ba", fake_b)
    rec_b = self._g(g_params, "ab", fake_a)
    keys = self.reg.split(rng, 4)
    # What D_B and D_A see of the fakes (augmented when gan.diffaug is set).
    seen_b = self.reg.augment(fake_b, keys[0])
    seen_a = self.reg.augment(fake_a, keys[1])
    adv_ab = jnp.mean(losses.gan_g_loss(self._d(d_vars, "b", seen_b), kind))
    adv_ba = jnp.mean(losses.gan_g_loss(self._d(d_vars, "a", seen_a), kind))
    cyc_a = cfg.lambda_a * jnp.mean(losses.l1(rec_a, a))
    cyc_b = cfg.lambda_b * jnp.mean(losses.l1(rec_b, b))
    total = adv_ab + adv_ba + cyc_a + cyc_b
    metrics = {"g_ab": adv_ab, "g_ba": adv_ba, "cycle_a": cyc_a,
               "cycle_b": cyc_b}
    if self.reg.feature_matching:
      # Each generator against the features of its target domain's D.
      for gen, name, real, seen, key in (("ab", "b", b, seen_b, keys[2]),
                                         ("ba", "a", a, seen_a, keys[3])):
        fm, fm_metrics = self.reg.fm_term(
            self._d_features(d_vars, name, self.reg.augment(real, key)),
            self._d_features(d_vars, name, seen), suffix="_" + gen)
        total = total + fm
        metrics.update(fm_metrics)
    if self.perceptual:
      metrics["g_perc_a"] = self.perceptual.distance(rec_a, a)
      metrics["g_perc_b"] = self.perceptual.distance(rec_b, b)
      total = total + self.perceptual.weight * (metrics["g_perc_a"] +
                                                metrics["g_perc_b"])
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

  def _d_loss(self, d_params, d, a, b, fake_a, fake_b, rng=None, d_step=0):
    """(D_A + D_B loss, (metrics, new `d.batch_stats`)) for D TrainState d."""
    kind = self.config.gan.loss
    v = d.variables(d_params)

    def d_seen(name, key, x, disc=None):  # D on what it sees of x.
      return self._d(v, name, self.reg.augment(x, key), disc)

    pen_disc = regularizers.for_penalties(self.disc)

    total, metrics, stats = 0.0, {}, {}
    for i, (name, real, fake) in enumerate((("a", a, fake_a),
                                            ("b", b, fake_b))):
      real_rng, fake_rng, pen_rng, gp_rng = self.reg.split(rng, 4, fold=i)
      # The power iteration does not depend on the images: the real pass's
      # update is the fake pass's.
      real_logits, stats[name] = self._d_apply(
          v, name, self.reg.augment(real, real_rng))
      loss = losses.halved_d_loss(real_logits, d_seen(name, fake_rng, fake),
                                  kind)
      penalty, reg_metrics = self.reg.d_terms(
          functools.partial(d_seen, name, pen_rng, disc=pen_disc), real,
          fake, gp_rng, d_step, suffix="_" + name)
      total = total + loss + penalty
      metrics.update({"d_" + name: loss, **reg_metrics})
    stats = None if stats["a"] is None else stats
    return total, (metrics, stats)

  def train_step(self, state, batch, rng):
    gan = self.config.gan
    a, b = batch["a"], batch["b"]
    g_rng, d_rng = self.reg.split(rng, 2, fold=1)
    (_, (g_metrics, fake_a, fake_b)), g_grads = jax.value_and_grad(
        self._g_loss, has_aux=True)(state.g.params, state.d.variables(), a, b,
                                    g_rng)
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
      (_, (metrics, stats)), grads = jax.value_and_grad(
          self._d_loss, has_aux=True)(s.d.params, s.d, a, b, mixed_a, mixed_b,
                                      d_rng, s.d.step)
      if apply:
        s = s.replace(d=gan_base.apply_updates(s.d, grads, batch_stats=stats),
                      pool_a=pool_a, pool_b=pool_b)
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

