"""Conditional GAN (pix2pix): sketch -> photo translation.

Batches hold {"sketch", "photo"} in [-1, 1] (and an int "label" when
`config.data.num_classes` > 0); see jaxgen/data/paired_datasets.py.

Generator (`model.generator`): "unet" (pix2pix U-Net, dropout as noise) or
"encoder" (sketch encoder to a `code_dim` vector joined with noise z, no
skips). Discriminator: a PatchGAN on (sketch, image) pairs.

Discriminator and label options (jaxgen/models/patchgan.py, unet.py; off
by default):
  gan.d_spectral_norm  spectral normalisation of every D weight; its state
                       is in `state.d.batch_stats` (with any BatchNorm's).
  gan.d_scales         k > 1: k PatchGANs on the pair average-pooled 0..k-1
                       times (pix2pixHD); D returns a list of logit maps and
                       the losses and D(x) metrics average over it.
  model.label_injection  label-conditioned data only: "concat" (label
                       channels at the inputs of G and D) or "projection"
                       (a projection PatchGAN, and class-conditional scale
                       and shift after G's decoder norms).
  gan.label_swap, gan.aux_classifier
                       label-conditioned data only: ask for labels other
                       than the sketch's, and an image-only classifier's
                       loss on G's outputs (jaxgen/tasks/label_following.py).

Losses (computed in float32 whatever `model.dtype`):
  D: 0.5 * [adv(D(s, y), real) + adv(D(s, G(s)), fake)]  (halved, pix2pix)
  G: adv(D(s, G(s)), real) + l1_weight * |G(s) - y|       (L1 on [-1, 1])
     + perceptual_weight * perc(G(s), y)
with adv from `gan.loss`: "bce" (non-saturating), "lsgan" or "hinge", and
perc the L1 distance of early FID-Inception features (jaxgen/perceptual.py;
`gan.perceptual_weight` = 0, the default, switches it off; > 0 needs the
evaluation weights, and `gan.perceptual_layers` picks the feature maps;
metric g_perc is the unweighted distance).

Each step runs the generator forward once (as pix2pix does): D is updated
on the detached fake, then G is updated against the updated D by pulling
the loss gradient w.r.t. the fake back through the saved forward (jax.vjp).
`gan.g_steps` = k updates D on every k-th step only (k generator steps per
discriminator step); `gan.d_steps` = k the converse.

Stability options (`config.gan`, jaxgen/tasks/regularizers.py): `diffaug`
augments each (sketch, photo) pair D sees with one geometry for both (colour
on the photo only); GP and R1 differentiate w.r.t. the photo, the sketch
fixed (d_gp, d_r1); `feature_matching` is pix2pixHD's per-example L1 between
D's layer features of (s, y) and (s, G(s)), both augmented alike (g_fm).

Optimizers: Adam with the schedules of jaxgen/optim.py ("linear" is the
pix2pix constant-then-linear decay) or "plateau": optax's reduce_on_plateau
scaling the Adam updates, fed the training L1 of every step (the adversarial
terms are non-stationary by design and say little about progress); its
patience counts windows of `plateau_window` steps whose mean L1 is compared.

EMA generator (`gan.ema_decay` > 0, jaxgen/tasks/gan_base.py): an average
of the generator's params and batch statistics, updated after every step,
is what `translate` (hence samples, evaluation, FID and the "best"
checkpoint) uses.

Evaluation (per validation image, on the [0, 1] scale): `l1` (mean absolute
error, i.e. half the L1 loss term's scale), `psnr` (peak 1) and `ssim`
(Gaussian 11x11, jaxgen/evaluation/paired.py; images of at least 11 px).
"""

import functools

import jax
import jax.numpy as jnp

from jaxgen import backend
from jaxgen import losses, optim, perceptual
from jaxgen.evaluation import paired as paired_eval
from jaxgen.models import patchgan, unet
from jaxgen.tasks import base
from jaxgen.tasks import gan_base
from jaxgen.tasks import label_following
from jaxgen.tasks import regularizers

GENERATORS = ("unet", "encoder")

# The pix2pix state is the generic GAN state.
CGANState = gan_base.GANState


def to_rgb(x):
  """Repeats a single channel three times (grey sketches in colour grids)."""
  return base.to_channels(x, 3) if x.shape[-1] == 1 else x


class CGANTask(base.Task):
  """pix2pix-style conditional GAN on paired batches (see module doc)."""

  def __init__(self, config, perceptual_params=None):
    """Builds the models; `perceptual_params` replaces the loaded feature
    weights of the perceptual term (tests; see jaxgen/perceptual.py)."""
    super().__init__(config)
    gan_base.check_alternation(config.gan)
    gan_base.check_separate_batches(config.gan, "cgan")
    self.reg = regularizers.Regularizers(config.gan)
    self.perceptual = perceptual.from_config(
        config.gan, config.data.crop_size, perceptual_params)
    m = config.model
    unet.check_label_injection(m.get("label_injection", "concat"),
                               self.num_classes)
    patchgan.check_scales(config.data.crop_size, m.n_layers,
                          config.gan.get("d_scales", 1))
    label_following.check(config.gan, self.num_classes)
    self.label_swap, self.aux_weight = label_following.options(config.gan)
    self.ema_decay = gan_base.ema_decay(config)
    self.gen, self.disc = self.make_models()
    self.aux = (label_following.make_classifier(
        config, self.num_classes, base.resolve_dtype(m.get("dtype", "auto")))
                if self.aux_weight else None)
    self.g_updates, self.d_updates = gan_base.updates_per_network(
        config.gan, config.train.num_steps)
    self._samples_jit = backend.jit(self._samples)

  @property
  def num_classes(self) -> int:
    return int(self.config.data.get("num_classes", 0))

  @property
  def channels(self):
    """(sketch, photo) channels: config.data.*_channels, else 1 and 3."""
    d = self.config.data
    return (int(d.get("sketch_channels", 0) or 1),
            int(d.get("photo_channels", 0) or 3))

  def make_models(self):
    """The (generator, discriminator) pair from config.model."""
    m = self.config.model
    dtype = base.resolve_dtype(m.get("dtype", "auto"))
    norm = m.get("norm", "batch")
    common = dict(num_classes=self.num_classes, label_dim=m.label_dim,
                  dtype=dtype,
                  label_injection=m.get("label_injection", "concat"))
    photo_channels = self.channels[1]
    if m.generator == "unet":
      gen = unet.UNet(
          out_channels=photo_channels, depth=m.depth, width=m.g_width,
          max_width=m.max_width, dropout=m.dropout,
          num_dropout=m.num_dropout, norm=norm,
          upsample_impl=m.upsample_impl,
          downsample_impl=m.downsample_impl, **common)
    elif m.generator == "encoder":
      gen = unet.EncoderGenerator(
          out_channels=photo_channels, width=m.g_width,
          max_width=m.max_width, code_dim=m.code_dim,
          upsample_impl=m.upsample_impl, downsample_impl=m.downsample_impl,
          **common)
    else:
      raise ValueError(f"Unknown model.generator {m.generator!r}; valid: "
                       f"{GENERATORS}.")
    disc = patchgan.discriminator(
        self.config.gan.get("d_scales", 1), width=m.d_width,
        max_width=m.max_width, n_layers=m.n_layers, norm=norm,
        downsample_impl=m.downsample_impl,
        spectral_norm=self.config.gan.get("d_spectral_norm", False), **common)
    return gen, disc

  def example_batch(self, num=2):
    # Models are built for the crop size they train on (training elements
    # are loaded larger and cropped by the augmentation).
    res = self.config.data.crop_size
    sc, pc = self.channels
    batch = {"sketch": jnp.zeros((num, res, res, sc), jnp.float32),
             "photo": jnp.zeros((num, res, res, pc), jnp.float32)}
    if self.num_classes:
      batch["label"] = jnp.zeros((num,), jnp.int32)
    return batch

  def init_state(self, rng, batch=None):
    del batch  # Shapes come from the config.
    sketch, photo, label = self._inputs(self.example_batch())
    n = sketch.shape[0]
    g_rng, d_rng, z_rng = jax.random.split(base.rbg_key(rng), 3)
    aux_rng = base.rbg_key(jax.random.fold_in(rng, 1))
    g_vars = jax.jit(functools.partial(self.gen.init, train=False))(
        g_rng, sketch, label, self._z(z_rng, n))
    d_vars = jax.jit(functools.partial(self.disc.init, train=False))(
        d_rng, sketch, photo, label)
    g = base.create_train_state(self.gen, g_vars, optim.make_optimizer(
        self.config.g_optim, self.g_updates))
    return CGANState(
        step=jnp.zeros((), jnp.int32), g=g,
        d=base.create_train_state(self.disc, d_vars, optim.make_optimizer(
            self.config.d_optim, self.d_updates)),
        ema=gan_base.ema_init(g, self.ema_decay),
        aux=None if self.aux is None else label_following.init_state(
            self.aux, aux_rng, photo,
            self.config.get("aux_optim") or self.config.d_optim,
            self.d_updates))

  def load_pretrained(self, state):
    """The auxiliary classifier from `gan.aux_classifier_init`'s run; reads
    the perceptual weights (a missing file stops a fresh start early)."""
    if self.perceptual:
      self.perceptual.load()
    if self.aux is None:
      return state
    variables = label_following.pretrained_variables(
        self.config, self.aux, self._inputs(self.example_batch())[1])
    if variables is None:
      return state
    return state.replace(
        aux=label_following.with_variables(state.aux, variables))

  # Pieces.

  def _z(self, rng, num):
    """Noise for the encoder generator (None for the U-Net)."""
    if self.config.model.generator != "encoder":
      return None
    return jax.random.normal(rng, (num, self.config.model.z_dim))

  def _inputs(self, batch):
    label = batch["label"] if self.num_classes else None
    return batch["sketch"], batch["photo"], label

  def translate(self, state, sketch, label=None, rng=None):
    """G(sketch[, label]) in eval mode (running BN stats, no dropout).

    The EMA generator when `gan.ema_decay` > 0.

    Args:
      state: a CGANState.
      sketch: [b, h, w, Cs] in [-1, 1].
      label: [b] ints for a label-conditioned model.
      rng: noise key for the encoder generator (default: key 0).

    Returns:
      [b, h, w, Cp] float32 images in [-1, 1].
    """
    rng = jax.random.key(0) if rng is None else rng
    return self.gen.apply(gan_base.sampling_generator(state).variables(),
                          sketch, label,
                          self._z(rng, sketch.shape[0]), train=False)

  def translate_batch(self, state, batch, rng):
    """Generated photos in [0, 1] for a batch's sketches (and labels)."""
    sketch, _, label = self._inputs(batch)
    return base.to_unit(self.translate(state, sketch, label, rng))

  def paired_targets(self, batch):
    """The real photos in [0, 1] that `translate_batch` should match."""
    return base.to_unit(batch["photo"])

  def input_shape(self, direction=""):
    del direction  # One way: sketch -> photo.
    return self.example_batch(1)["sketch"].shape[1:]

  # The step.

  def train_step(self, state, batch, rng):
    gan = self.config.gan
    sketch, real, label = self._inputs(batch)
    drop_rng, z_rng = jax.random.split(base.rbg_key(rng))
    swap_rng, cls_rng, g_cls_rng = jax.random.split(
        base.rbg_key(jax.random.fold_in(rng, 2)), 3)
    z = self._z(z_rng, sketch.shape[0])
    real_rng, fake_rng, pen_rng, gp_rng, g_rng = self.reg.split(rng, 5, fold=1)
    # The auxiliary classifier sees D's DiffAugment too (its own draws).
    cls_aug_rng, g_cls_aug_rng = self.reg.split(rng, 2, fold=3)
    # The labels G is asked for (the sketch's own unless gan.label_swap);
    # kept marks the examples whose photo is G's paired target.
    asked, kept = label, None
    if self.label_swap:
      asked, kept = label_following.requested_labels(
          swap_rng, label, self.num_classes, self.label_swap)
    # D on (sketch, photo) pairs, augmented with one geometry per pair; a
    # fake is judged with the label it was made for.
    d_on = lambda v, photo, key, lbl=label, disc=self.disc, **kw: (
        regularizers.apply_d(disc, v, *self.reg.augment_pair(
            sketch, photo, key), lbl, **kw))
    pen_disc = regularizers.for_penalties(self.disc)

    def g_forward(params):
      fake, upd = self.gen.apply(
          state.g.variables(params), sketch, asked, z, train=True,
          rngs={"dropout": drop_rng}, mutable=["batch_stats"])
      return fake, upd["batch_stats"]

    fake, g_vjp, g_stats = jax.vjp(g_forward, state.g.params, has_aux=True)
    fake_d = jax.lax.stop_gradient(fake)
    # Drives "plateau" schedules (every example: a swapped one moves too).
    value = jnp.mean(losses.l1(fake_d, real))

    def d_loss(params, d):
      v = d.variables(params)
      real_logits, stats, _ = d_on(v, real, real_rng)
      fake_logits, stats, _ = d_on(regularizers.with_stats(v, stats),
                                   fake_d, fake_rng, asked)
      loss = losses.halved_d_loss(real_logits, fake_logits, gan.loss)
      penalty, metrics = self.reg.d_terms(
          lambda photo: d_on(v, photo, pen_rng, disc=pen_disc)[0], real,
          fake_d, gp_rng, d.step)
      metrics.update(d_real=losses.mean_sigmoid(real_logits),
                     d_fake=losses.mean_sigmoid(fake_logits))
      return loss + penalty, (metrics, stats)

    def d_update(state, apply):
      (loss, (metrics, stats)), grads = jax.value_and_grad(
          d_loss, has_aux=True)(state.d.params, state.d)
      if apply:
        state = state.replace(
            d=gan_base.apply_updates(state.d, grads, value, stats))
      if self.aux is not None:
        aux, cls_metrics = label_following.classifier_update(
            state.aux, self.reg.augment(real, cls_aug_rng), label, cls_rng,
            apply)
        state = state.replace(aux=aux)
        metrics = {**metrics, **cls_metrics}
      return state, {"d_loss": loss, **metrics,
                     "d_lr": gan_base.lr_metric(self.config.d_optim,
                                                self.d_updates, state.d)}

    def g_update(state, apply):
      def loss_of_fake(f):
        # D in train mode (batch statistics, as in the D step); its
        # statistics updates are discarded here.
        v = state.d.variables()
        fm_on = self.reg.feature_matching
        # The same geometry for the real and fake pair: the paired feature
        # matching compares them location by location.
        logits, _, fake_feats = d_on(v, f, g_rng, asked, features=fm_on)
        total, adv, l1 = losses.adversarial_l1_loss(
            logits, f, real, gan.loss, gan.l1_weight, l1_mask=kept)
        extra = {}
        if self.aux is not None:
          cls, extra = label_following.generator_term(
              state.aux, self.reg.augment(f, g_cls_aug_rng), asked,
              g_cls_rng)
          total = total + self.aux_weight * cls
        if fm_on:
          fm, fm_metrics = self.reg.fm_term(
              d_on(v, real, g_rng, features=True)[2], fake_feats, paired=True)
          extra.update(fm_metrics)
          total = total + fm
        if self.perceptual:
          extra["g_perc"] = self.perceptual.distance(f, real)
          total = total + self.perceptual.weight * extra["g_perc"]
        return total, (adv, l1, extra)

      (total, (adv, l1, extra)), dfake = jax.value_and_grad(
          loss_of_fake, has_aux=True)(fake)
      if apply:
        (grads,) = g_vjp(dfake)
        state = state.replace(
            g=gan_base.apply_updates(state.g, grads, value, g_stats))
      return state, {"g_loss": total, "g_gan": adv, "g_l1": l1, **extra,
                     "g_lr": gan_base.lr_metric(self.config.g_optim,
                                                self.g_updates, state.g)}

    state, d_metrics = gan_base.alternate(d_update, gan.g_steps, 0, state)
    state, g_metrics = gan_base.alternate(g_update, gan.d_steps,
                                          gan.d_steps - 1, state)
    state = gan_base.with_ema(state.replace(step=state.step + 1),
                              self.ema_decay)
    return state, {**d_metrics, **g_metrics}

  def eval_step(self, state, batch, rng):
    sketch, real, label = self._inputs(batch)
    fake = self.translate(state, sketch, label, rng)
    return paired_eval.batch_metrics(base.to_unit(fake), base.to_unit(real))

  def samples(self, state, batch, rng):
    return self._samples_jit(state, batch, rng)

  def _samples(self, state, batch, rng):
    sketch, real, label = self._inputs(batch)
    fake = self.translate(state, sketch, label, rng)
    rows = [to_rgb(sketch), to_rgb(fake), to_rgb(real)]
    out = {"translation": base.interleave(rows)}
    if self.num_classes:
      n = min(sketch.shape[0], 8)
      rows = [to_rgb(sketch[:n])]
      for c in range(min(self.num_classes, 8)):
        rows.append(to_rgb(self.translate(
            state, sketch[:n], jnp.full((n,), c, jnp.int32), rng)))
      rows.append(to_rgb(real[:n]))
      out["by_label"] = base.interleave(rows)
    return {k: base.to_unit(v) for k, v in out.items()}

  def grid_columns(self, name):
    if name == "by_label":
      return min(self.num_classes, 8) + 2
    return 3 if name == "translation" else 8

