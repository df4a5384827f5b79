"""DCGAN task: non-saturating GAN with separate optimizers for G and D.

Alternation: `gan.d_steps` discriminator updates per generator update, or
`gan.g_steps` generator updates per discriminator update, scheduled by the
step counter (each call of `train_step` consumes one batch). Every call
reports both losses; the network that is not updated in a call has its loss
evaluated without an update.

Stability options (`config.gan`, see jaxgen/tasks/regularizers.py): `diffaug`
augments real and generated images before every D call of a training step
(D and G steps, not evaluation); `gp_weight` / `r1_weight` add WGAN-GP / lazy
R1 to D's loss (metrics d_gp, d_r1); `feature_matching` adds to G's loss the
distance between the batch means of D's layer features of real and
generated images (g_fm).

`gan.d_spectral_norm` spectrally normalises the discriminator's weights
(jaxgen/models/dcgan.py); its power-iteration state lives with the
BatchNorm statistics in `state.d.batch_stats`, updated by every training
call of D and checkpointed with it. `gan.d_scales` must stay 1 (multi-scale
discriminators are PatchGANs: cgan, cyclegan).

`gan.d_joint_batch` makes D's training-mode calls normalise the real and
generated images as one batch (regularizers.apply_d_pair), in the D step and
in G's (which then also encodes the step's real images). By default each
batch has its own BatchNorm statistics, as in DCGAN, and D can tell the
two batches apart by their statistics alone: measured, D in training mode
scores held-out real images nearly as high as training ones and samples
near 0, while in eval mode it is far less sure. Jointly normalised, D is
less sure, but the Siamese GAN's samples came out worse (blown-out, or
partly collapsed), so the option is off everywhere (README "Results").

With `gan.ema_decay` > 0 an EMA copy of the generator (jaxgen/tasks/
gan_base.py) makes the samples, `generate` and the eval metrics.

`gan.bn_recalibrate` = n > 0 replaces the sampling generator's BatchNorm
statistics by those of its own activations on n fixed latent codes
("precise BN", `sampling_generator`) for samples, `generate` and the eval
metrics. The running averages lag a generator that changes every step, and
an EMA of them does not describe the EMA weights' activations; sampling
with them gives low-contrast images early in training and a worse SWD and
FID (README "Results"). The codes come from a fixed key, so samples remain a
function of the state alone, and one image is normalised like a batch of
many; `eval_state` computes this generator once per evaluation.
Stored configs without the field read 0 (the running averages).

`gan.truncation` = t > 0 draws the codes of samples, `generate` and the eval
metrics from N(0, I) truncated to [-t, t] per coordinate (resampled outside,
BigGAN's "truncation trick", which trades recall for precision in
generators that keep the codes' scale). Training and the BatchNorm
recalibration keep N(0, I): the generator stays the function it was trained
as. In this DCGAN generator the codes go through a dense layer into
BatchNorm, so truncated codes shrink every activation and wash the images
out (measured on the Siamese GAN: FID 94 -> 195 at t = 1, README
"Results"); statistics recomputed on truncated codes would normalise the
truncation away instead (the same pixel statistics as without it). 0
(stored configs without the field) is off; a stored run is sampled at
another value by `jaxgen.run.load(..., truncation=t)` (the `--truncation`
flag of the sample, evaluate and compare commands).

The "best" checkpoint uses `eval/swd`, a sliced Wasserstein distance between
generated and held-out real images (pixels), until an Inception-based metric
is configured.
"""

import jax
import jax.numpy as jnp

from jaxgen import losses, optim
from jaxgen.models import dcgan
from jaxgen.tasks import base
from jaxgen.tasks import gan_base
from jaxgen.tasks import regularizers

GANState = gan_base.GANState


def check_single_scale(gan_cfg):
  """Raises unless gan.d_scales is 1 (the default) for a one-scale D."""
  if gan_cfg.get("d_scales", 1) != 1:
    raise ValueError(
        f"gan.d_scales={gan_cfg.d_scales} needs a multi-scale "
        "discriminator (the PatchGAN families: cgan, cyclegan); this "
        "family's discriminator has one scale, set gan.d_scales=1.")


def check_truncation(value):
  """Raises unless gan.truncation is 0 (off) or a positive finite bound."""
  if not (value == 0 or 0 < value < float("inf")):
    raise ValueError(
        f"gan.truncation={value}: give a bound t > 0 to draw the latent "
        "codes of samples from N(0, 1) truncated to [-t, t] (0.5-1 is "
        "usual), or 0 for no truncation.")


class GANTask(base.Task):
  """Unconditional GAN on `batch["image"]` in [0, 1] (mapped to [-1, 1])."""

  def __init__(self, config):
    super().__init__(config)
    gan_base.check_alternation(config.gan)
    self.reg = regularizers.Regularizers(config.gan)
    check_single_scale(config.gan)
    self.joint_batch = config.gan.get("d_joint_batch", False)
    self.ema_decay = gan_base.ema_decay(config)
    check_truncation(config.gan.get("truncation", 0.0))
    self.gen, self.disc = self.make_models(config.data.res,
                                           config.data.channels)

  def example_batch(self, num=2):
    d = self.config.data
    return {"image": jnp.zeros((num, d.res, d.res, d.channels), jnp.float32)}

  def make_models(self, res, channels):
    """The (generator, discriminator) pair; subclasses may override."""
    m = self.config.model
    arch = m.get("arch", "dcgan")
    gen = dcgan.generator(arch, res=res, channels=channels, width=m.g_width,
                          max_width=m.max_width,
                          upsample_impl=m.get("upsample_impl"))
    disc = dcgan.Discriminator(
        width=m.d_width, max_width=m.max_width,
        downsample_impl=m.get("downsample_impl"),
        spectral_norm=self.config.gan.get("d_spectral_norm", False),
        norm=m.get("d_norm", "batch"), arch=arch)
    return gen, disc

  def init_state(self, rng, batch=None):
    del batch  # Shapes come from the config.
    g_rng, d_rng = jax.random.split(rng)
    z = jnp.zeros((2, self.config.model.z_dim + self.num_classes))
    g_vars = jax.jit(self.gen.init)(g_rng, z)
    d_vars = jax.jit(self.disc.init)(d_rng, self.example_batch()["image"])
    steps = self.config.train.num_steps
    g = base.create_train_state(
        self.gen, g_vars, optim.make_optimizer(self.config.g_optim, steps))
    return GANState(
        step=jnp.zeros((), jnp.int32), g=g,
        d=base.create_train_state(
            self.disc, d_vars, optim.make_optimizer(self.config.d_optim, steps)),
        ema=gan_base.ema_init(g, self.ema_decay))

  # Pieces subclasses reuse or override.

  @property
  def num_classes(self) -> int:
    """Classes G and D are conditioned on; 0 (unconditional) here."""
    return 0

  def batch_labels(self, batch):
    """Class indices [b] of a batch's real images, or None (unconditional)."""
    del batch
    return None

  def _codes(self, rng, z_fn, num, labels):
    """z_fn(key, shape) codes, with one-hot `labels` (random if None) when
    the task is class-conditional."""
    shape = (num, self.config.model.z_dim)
    if not self.num_classes:
      if labels is not None:
        raise ValueError(
            "Labels were given, but this generator is unconditional (a "
            "class-conditional Siamese GAN has model.num_classes > 0).")
      return z_fn(rng, shape)  # The key of unconditional runs, unsplit.
    z_rng, label_rng = jax.random.split(rng)
    z = z_fn(z_rng, shape)
    if labels is None:
      labels = jax.random.randint(label_rng, (num,), 0, self.num_classes)
    labels = jnp.broadcast_to(jnp.asarray(labels, jnp.int32), (num,))
    return jnp.concatenate(
        [z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)

  def code_labels(self, z):
    """The class indices [b] of codes from `sample_z`, or None."""
    if not self.num_classes:
      return None
    return jnp.argmax(z[:, self.config.model.z_dim:], -1)

  def sample_z(self, rng, num, labels=None):
    """Training codes: [num, z_dim] from N(0, I).

    Args:
      rng: a PRNG key.
      num: how many codes.
      labels: class-conditional tasks: [num] (or scalar) class indices
        appended one-hot; None draws them uniformly.

    Returns:
      [num, z_dim + num_classes] codes.
    """
    return self._codes(rng, jax.random.normal, num, labels)

  def sampling_z(self, rng, num, labels=None):
    """Codes of samples, `generate` and eval (gan.truncation, module doc).

    Args:
      rng: a PRNG key.
      num: how many codes.
      labels: as in `sample_z`.

    Returns:
      [num, z_dim + num_classes] codes: `sample_z`, or with gan.truncation
      = t > 0 each coordinate of z from N(0, 1) truncated to [-t, t].
    """
    t = self.config.gan.get("truncation", 0.0)
    if not t:
      return self.sample_z(rng, num, labels)
    return self._codes(
        rng, lambda key, shape: jax.random.truncated_normal(key, -t, t, shape),
        num, labels)

  def generator_forward(self, g, z, train=True):
    """G(z) in [-1, 1] and the updated generator batch statistics."""
    if train:
      fake, upd = self.gen.apply(g.variables(), z, train=True,
                                 mutable=["batch_stats"])
      return fake, upd["batch_stats"]
    return self.gen.apply(g.variables(), z, train=False), g.batch_stats

  def sampling_generator(self, state):
    """The generator for samples, `generate` and eval (module docstring).

    Args:
      state: a GANState.

    Returns:
      `gan_base.sampling_generator(state)` (the EMA generator when enabled),
      with its BatchNorm statistics recomputed when gan.bn_recalibrate > 0.
    """
    if state.sampling_ready:
      return state.g
    g = gan_base.sampling_generator(state)
    num = self.config.gan.get("bn_recalibrate", 0)
    if not num or not g.batch_stats:
      return g
    z = self.sample_z(jax.random.key(0), num)
    # Momentum 0: the training call stores the batch statistics themselves.
    _, upd = self.gen.clone(bn_momentum=0.0).apply(
        g.variables(), z, train=True, mutable=["batch_stats"])
    return g.replace(batch_stats=upd["batch_stats"])

  def eval_state(self, state):
    """`state` with the sampling generator computed once (base.Task).

    The recalibration is a forward pass of G on n codes; without this, every
    eval batch and `generate` chunk would repeat it.

    Args:
      state: a GANState.

    Returns:
      The state with `g` = `sampling_generator(state)`, `ema` None and
      `sampling_ready` set.
    """
    return state.replace(g=self.sampling_generator(state), ema=None,
                         sampling_ready=True)

  def d_logits(self, output):
    """The real/fake logits of a discriminator output."""
    return output

  def d_penalties(self, v, d, real, fake, rng, labels=None):
    """GP and R1 terms of D's loss (regularizers.Regularizers.d_terms).

    Args:
      v: D's variables.
      d: D's TrainState (its step paces lazy R1).
      real: real images (augmented inside, as D saw them).
      fake: generated images.
      rng: key of the augmentation and the GP interpolation.
      labels: a class-conditional D's (real labels, fake labels), or None.
        Both penalties ask D about the real images' classes: R1 is taken at
        the real images, and WGAN-GP's interpolates, drawn towards the real
        images, are judged as the class of their real end (the penalty
        bounds D's slope in the image for a fixed class).

    Returns:
      (loss term, metrics).
    """
    aug_rng, gp_rng = self.reg.split(rng, 2)
    disc = regularizers.for_penalties(self.disc)
    real_labels = None if labels is None else labels[0]
    d_fn = lambda x: self.d_logits(regularizers.apply_d(
        disc, v, *regularizers.d_args(self.reg.augment(x, aug_rng),
                                      real_labels))[0])
    return self.reg.d_terms(d_fn, real, fake, gp_rng, d.step)

  def g_feature_matching(self, v, real, fake, labels=None):
    """Weighted feature matching of G's loss and its metrics (or 0, {}).

    Args:
      v: D's variables.
      real: real images as D sees them in G's step (augmented).
      fake: generated images as D saw them (augmented).
      labels: a class-conditional D's (real labels, fake labels), or None;
        each batch's features are D's given its own classes.

    Returns:
      (loss term, metrics).
    """
    if not self.reg.feature_matching:
      return 0.0, {}
    real_labels, fake_labels = labels if labels is not None else (None, None)
    feats = lambda x, y: regularizers.apply_d(
        self.disc, v, *regularizers.d_args(x, y), features=True)[2]
    return self.reg.fm_term(feats(real, real_labels), feats(fake, fake_labels))

  def d_loss(self, d_params, d, real, fake, rng, labels=None):
    """Discriminator loss (mean), metrics and new D batch statistics.

    `labels` (class-conditional tasks: real and fake class indices) is
    None here.
    """
    del labels
    real_rng, fake_rng, pen_rng = self.reg.split(rng, 3)
    v = d.variables(d_params)
    # A D without normalisation or spectral norm (model.d_norm) has no
    # statistics: the returned variables hold none.
    real_logits, fake_logits, v1 = regularizers.apply_d_pair(
        regularizers.d_call(self.disc), v, self.reg.augment(real, real_rng),
        self.reg.augment(fake, fake_rng), joint=self.joint_batch)
    loss = jnp.mean(losses.gan_d_loss(real_logits, fake_logits,
                                      self.config.gan.loss))
    penalty, metrics = self.d_penalties(v, d, real, fake, pen_rng)
    loss = loss + penalty
    metrics.update({"d_loss": loss,
                    "d_real": losses.mean_sigmoid(real_logits),
                    "d_fake": losses.mean_sigmoid(fake_logits)})
    return loss, (metrics, v1.get("batch_stats"))

  def g_loss(self, g_params, state, real, rng, labels=None):
    """Generator loss (mean), metrics and new G batch statistics.

    `labels` (class-conditional tasks: the real images' class indices) is
    None here.
    """
    del labels
    z = self.sample_z(rng, real.shape[0])
    fake, g_stats = self.generator_forward(state.g.replace(params=g_params), z)
    fake_rng, real_rng = self.reg.split(rng, 2, fold=1)
    fake = self.reg.augment(fake, fake_rng)
    real = self.reg.augment(real, real_rng)
    # D runs in train mode (batch statistics of the fake batch, or of the
    # real and fake mix with gan.d_joint_batch, as in the D step) but its
    # statistics updates are discarded here.
    v = state.d.variables()
    if self.joint_batch:
      _, logits, _ = regularizers.apply_d_pair(
          regularizers.d_call(self.disc), v, real, fake, joint=True)
    else:
      logits, _ = self.disc.apply(v, fake, mutable=["batch_stats"])
    loss = jnp.mean(losses.gan_g_loss(logits, self.config.gan.loss))
    fm, metrics = self.g_feature_matching(v, real, fake)
    loss = loss + fm
    metrics["g_loss"] = loss
    return loss, (metrics, g_stats)

  # The alternation.

  def _d_update(self, state, real, rng, apply, labels=None):
    z_rng, d_rng = jax.random.split(rng)
    z = self.sample_z(z_rng, real.shape[0])
    fake, _ = self.generator_forward(state.g, z)
    fake = jax.lax.stop_gradient(fake)
    # Class-conditional: (real labels, the labels G was asked for).
    both = None if labels is None else (labels, self.code_labels(z))
    grad_fn = jax.value_and_grad(self.d_loss, has_aux=True)
    if not apply:
      _, (metrics, _) = self.d_loss(state.d.params, state.d, real, fake, d_rng,
                                    both)
      return state, metrics
    (_, (metrics, stats)), grads = grad_fn(state.d.params, state.d, real,
                                           fake, d_rng, both)
    return state.replace(d=gan_base.apply_updates(state.d, grads,
                                                  batch_stats=stats)), metrics

  def _g_update(self, state, real, rng, apply, labels=None):
    if not apply:
      _, (metrics, _) = self.g_loss(state.g.params, state, real, rng, labels)
      return state, metrics
    grad_fn = jax.value_and_grad(self.g_loss, has_aux=True)
    (_, (metrics, stats)), grads = grad_fn(state.g.params, state, real, rng,
                                           labels)
    return state.replace(g=gan_base.apply_updates(state.g, grads,
                                                  batch_stats=stats)), metrics

  def train_step(self, state, batch, rng):
    real = base.to_signed(batch["image"])
    labels = self.batch_labels(batch)
    d_rng, g_rng = jax.random.split(rng)
    gan = self.config.gan
    state, d_metrics = gan_base.alternate(
        lambda s, apply: self._d_update(s, real, d_rng, apply, labels),
        gan.g_steps, 0, state)
    state, g_metrics = gan_base.alternate(
        lambda s, apply: self._g_update(s, real, g_rng, apply, labels),
        gan.d_steps, gan.d_steps - 1, state)
    state = gan_base.with_ema(state.replace(step=state.step + 1),
                              self.ema_decay)
    return state, {**d_metrics, **g_metrics}

  def eval_step(self, state, batch, rng):
    real = base.to_signed(batch["image"])
    z_rng, swd_rng = jax.random.split(rng)
    z = self.sampling_z(z_rng, real.shape[0])
    fake, _ = self.generator_forward(self.sampling_generator(state), z,
                                     train=False)
    v = state.d.variables()
    out_real = self.d_eval(v, real, self.batch_labels(batch))
    out_fake = self.d_eval(v, fake, self.code_labels(z))
    swd = losses.sliced_wasserstein(fake, real, swd_rng)
    return {"d_real": jax.nn.sigmoid(self.d_logits(out_real)),
            "d_fake": jax.nn.sigmoid(self.d_logits(out_fake)),
            "swd": jnp.full(real.shape[:1], swd),
            **self.eval_d_extras(v, out_real, out_fake)}

  def d_eval(self, d_vars, images, labels):
    """D's output in eval mode; `labels` (None here) for conditional Ds."""
    del labels
    return self.disc.apply(d_vars, images, train=False)

  def eval_d_extras(self, d_vars, out_real, out_fake):
    """Per-example eval metrics from D's outputs beyond D(real), D(fake).

    Args:
      d_vars: D's variables.
      out_real: D's output (eval mode) on a batch of real images.
      out_fake: D's output on as many samples of the sampling generator.

    Returns:
      A dict of arrays with the batch as leading axis (none for a plain D).
    """
    del d_vars, out_real, out_fake
    return {}

  def d_scores(self, state, images, labels=None):
    """The trained D's judgement of each image (jaxgen.sample `select`).

    Args:
      state: a GANState.
      images: [n, h, w, c] in [0, 1].
      labels: class-conditional tasks: [n] classes D judges the images as.

    Returns:
      {"real": [n]}: D's real/fake logit in eval mode, averaged over its
      outputs per image, and the task's `d_score_extras`.
    """
    v = state.d.variables()
    out = self.d_eval(v, base.to_signed(images), labels)
    return {"real": self.d_logits(out).reshape(images.shape[0], -1).mean(-1),
            **self.d_score_extras(v, out, labels)}

  def d_score_extras(self, d_vars, output, labels):
    """Per-image scores from D's eval output beyond "real" (none here).

    Args:
      d_vars: D's variables.
      output: D's eval-mode output on the images.
      labels: their classes, or None.

    Returns:
      A dict of [n] arrays.
    """
    del d_vars, output, labels
    return {}

  def samples(self, state, batch, rng):
    return {"samples": self.generate(state, rng, batch["image"].shape[0])}

  def generate(self, state, rng, num, labels=None):
    """`num` images in [0, 1] from the sampling generator.

    Args:
      state: a GANState.
      rng: a PRNG key.
      num: how many images.
      labels: class-conditional tasks: [num] (or scalar) class indices to
        ask for; None draws them uniformly. Unconditional tasks take None.

    Returns:
      [num, res, res, channels] images.
    """
    fake, _ = self.generator_forward(self.sampling_generator(state),
                                     self.sampling_z(rng, num, labels),
                                     train=False)
    return base.to_unit(fake)
