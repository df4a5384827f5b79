r"""DCGAN with a Siamese discriminator (jaxgen.models.siamese).

Notation: x a batch of real images in [-1, 1], x' the same batch rolled by
one (x'_i = x_{i+1}, a different real image), z ~ N(0, I), f the shared
encoder, D(.) = adversarial logit of f(.), S(a, b) = similarity logit of
|f(a) - f(b)|, and l(t, y) the binary cross-entropy of logit t against
target y (l(t, 1) = softplus(-t), l(t, 0) = softplus(t)).

Discriminator (encoder and both heads), minimised:

  L_D = E[ l(D(x), 1) + l(D(G(z)), 0) ]
      + lambda_D * E[ l(S(x, x'), 1) + l(S(x, G(z)), 0) ]

i.e. real-real pairs should score "alike", real-fake pairs "not alike".

Generator, minimised (both terms non-saturating):

  L_G = E[ l(D(G(z)), 1) ] + lambda_G * E[ l(S(x, G(z)), 1) ]

the adversarial loss plus a weighted dissimilarity term -log sigmoid(S(x,
G(z))): the generator is pushed to make its images look, to the shared
encoder, like real ones pair by pair. With `gan.loss` = "lsgan" or "hinge"
both heads use that loss instead (jaxgen.losses.gan_d_loss/gan_g_loss with
the same targets). lambda_D = `siamese.d_sim_weight`, lambda_G =
`siamese.g_sim_weight`; with both 0 the similarity head is not built and the
task is a plain DCGAN whose discriminator is the encoder plus the
adversarial head.

Each image is encoded once per step; both heads read the same features, so
gradients from the real branch, the fake branch and both heads all land on
the one encoder. With BatchNorm in the encoder, real and fake batches are
normalised separately (as in DCGAN's discriminator), or as one batch with
`gan.d_joint_batch` (jaxgen/tasks/gan.py), in D's step and in G's.

Stability options (`config.gan`, as in jaxgen/tasks/gan.py): the encoder
sees DiffAugment-ed images in the D and G losses (both heads); GP and R1
penalise the adversarial logit's gradient; feature matching uses the
encoder's layer outputs.

Optional EMA generator (`gan.ema_decay` > 0, set by the config's `ema=DECAY`;
older stored configs have `model.ema_decay`, still read): shared with every
GAN family, see jaxgen/tasks/gan_base.py. The EMA copy is used for samples,
`generate` and evaluation.

`gan.d_spectral_norm` spectrally normalises the encoder and both heads
(jaxgen/models/siamese.py); the power-iteration state is in
`state.d.batch_stats`, updated by the D step's encoder calls (for both
heads: see SiameseDiscriminator).

Class-conditional (`model.num_classes` > 0, the config's `cond`; it must
equal the number of `data.classes`): G's code is z with the one-hot class
appended (`sample_z`), with `model.g_class_norm` also a per-class scale and
shift after each of G's BatchNorms (jaxgen/models/dcgan.py; without it the
class enters G's first dense layer only, and measured G nearly ignores it:
README "Results"), D adds the class projection of jaxgen/models/
siamese.py; class i is the i-th of `data.classes` (the data's CIFAR ids are
mapped to it). Real images are judged with their own class, fakes with the
class G was asked for, drawn uniformly; `generate` takes the classes to
ask for. GP and R1 ask D about the real images' classes (jaxgen/tasks/
gan.py `d_penalties`); feature matching compares D's features of the real
images given their classes with those of the fakes given theirs.

AC-GAN's class head (class-conditional only; `siamese.d_class_weight`
lambda_C^D and `siamese.g_class_weight` lambda_C^G, both 0 by default,
`:cond,ac` sets 1 and 1): a linear classifier C on the shared encoder's
features (jaxgen/models/siamese.py). D adds lambda_C^D * CE(C(f(x)), y)
on the real images and their classes y, G adds
lambda_C^G * CE(C(f(G(z, c))), c) for the classes c it was asked for
(metrics d_cls, d_cls_acc, g_cls, g_cls_acc). As in StarGAN, and unlike the
original AC-GAN, D's head learns from real images only: fitted to fakes as
well, it could learn G's own way of drawing each class, which G would then
only have to keep. Measured in README "Results".

The "best" checkpoint uses the configured `train.best_metric` (default
`eval/swd`, sliced Wasserstein distance between generated and held-out real
pixels, as in GANTask).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import losses
from jaxgen.data import cifar
from jaxgen.models import dcgan
from jaxgen.models import siamese
from jaxgen.tasks import gan
from jaxgen.tasks import regularizers


def similarity_pairs(real_feats):
  """Features of x' (the batch rolled by one), to pair real with real."""
  return jnp.roll(real_feats, 1, axis=0)


class SiameseGANTask(gan.GANTask):
  """GANTask with the Siamese discriminator and its losses.

  The D/G alternation, optimizers and non-saturating adversarial losses are
  GANTask's; `d_loss` and `g_loss` add the similarity terms.
  """

  def __init__(self, config):
    super().__init__(config)
    check_class_head(config, self.num_classes)
    if self.num_classes:
      check_conditional(config)
      ids = cifar.resolve_classes(config.data.get("classes", "cat,dog"))
      # CIFAR-10 id -> index in data.classes (-1: not a selected class).
      table = np.full(len(cifar.CLASS_NAMES), -1, np.int32)
      table[list(ids)] = np.arange(len(ids))
      self._class_index = table

  @property
  def num_classes(self) -> int:
    return int(self.config.model.get("num_classes", 0))

  @property
  def class_names(self):
    """The names of the classes G is conditioned on, by index (or [])."""
    if not self.num_classes:
      return []
    return [cifar.CLASS_NAMES[i] for i in
            cifar.resolve_classes(self.config.data.get("classes", "cat,dog"))]

  def batch_labels(self, batch):
    """The class indices [b] of the batch's CIFAR ids (conditional only)."""
    if not self.num_classes:
      return None
    return jnp.asarray(self._class_index)[batch["label"]]

  def example_batch(self, num=2):
    batch = super().example_batch(num)
    if self.num_classes:
      batch["label"] = jnp.zeros((num,), jnp.int32)
    return batch

  @property
  def use_class_head(self):
    s = self.config.siamese
    return s.get("d_class_weight", 0.0) > 0 or s.get("g_class_weight", 0.0) > 0

  @property
  def use_similarity(self):
    s = self.config.siamese
    return s.d_sim_weight > 0 or s.g_sim_weight > 0

  def make_models(self, res, channels):
    m = self.config.model
    arch = m.get("arch", "dcgan")
    gen = dcgan.generator(
        arch, res=res, channels=channels, width=m.g_width,
        max_width=m.max_width, upsample_impl=m.get("upsample_impl"),
        num_classes=self.num_classes if m.get("g_class_norm") else 0)
    disc = siamese.SiameseDiscriminator(
        width=m.d_width, max_width=m.max_width, norm=m.get("d_norm", "batch"),
        similarity=self.use_similarity, sim_hidden=m.get("sim_hidden", 128),
        downsample_impl=m.get("downsample_impl"),
        spectral_norm=self.config.gan.get("d_spectral_norm", False),
        num_classes=self.num_classes, class_head=self.use_class_head,
        arch=arch)
    return gen, disc

  def _encode(self, v, images, labels=None):
    """(features, logits, updated variables) in train mode."""
    (feats, logits), v = regularizers.d_call(self.disc)(v, images, labels)
    return feats, logits, v

  def _encode_pair(self, v, real, fake, labels=None):
    """((features, logits) of real, of fake, updated variables), train mode.

    Args:
      v: D's variables.
      real: real images.
      fake: generated images.
      labels: class-conditional: (real labels, fake labels); else None.
    """
    def call(v, images, y):
      feats, logits, v = self._encode(v, images, y)
      return (feats, logits), v

    return regularizers.apply_d_pair(call, v, real, fake, labels,
                                     joint=self.joint_batch)

  def d_logits(self, output):
    return output[1]

  def _sim(self, v, fa, fb):
    return self.disc.apply(
        v, fa, fb, method=siamese.SiameseDiscriminator.similarity_logits)

  def _class_term(self, v, feats, labels):
    """Mean cross-entropy of the class head on `feats`, and its accuracy."""
    logits = self.disc.apply(v, feats,
                             method=siamese.SiameseDiscriminator.class_logits)
    ce, correct = losses.classification(logits, labels)
    return jnp.mean(ce), jnp.mean(correct)

  def d_loss(self, d_params, d, real, fake, rng, labels=None):
    """L_D (see the module docstring), metrics and new D batch statistics.

    Args:
      d_params: D's parameters (differentiated).
      d: D's TrainState.
      real: real images in [-1, 1].
      fake: as many generated images.
      rng: a PRNG key.
      labels: class-conditional: (real labels, fake labels); else None.

    Returns:
      (loss, (metrics, new batch statistics)).
    """
    kind = self.config.gan.loss
    real_labels = labels[0] if labels is not None else None
    real_rng, fake_rng, pen_rng = self.reg.split(rng, 3)
    v0 = d.variables(d_params)
    (f_real, real_logits), (f_fake, fake_logits), v = self._encode_pair(
        v0, self.reg.augment(real, real_rng), self.reg.augment(fake, fake_rng),
        labels)
    adv = jnp.mean(losses.gan_d_loss(real_logits, fake_logits, kind))
    penalty, metrics = self.d_penalties(v0, d, real, fake, pen_rng, labels)
    metrics.update({"d_adv": adv,
                    "d_real": losses.mean_sigmoid(real_logits),
                    "d_fake": losses.mean_sigmoid(fake_logits)})
    loss = adv + penalty
    if self.use_similarity:
      s_rr = self._sim(v, f_real, similarity_pairs(f_real))
      s_rf = self._sim(v, f_real, f_fake)
      sim = jnp.mean(losses.gan_d_loss(s_rr, s_rf, kind))
      loss = loss + self.config.siamese.d_sim_weight * sim
      metrics.update(d_sim=sim, sim_real=losses.mean_sigmoid(s_rr),
                     sim_fake=losses.mean_sigmoid(s_rf))
    if self.use_class_head:
      cls, acc = self._class_term(v, f_real, real_labels)
      loss = loss + self.config.siamese.d_class_weight * cls
      metrics.update(d_cls=cls, d_cls_acc=acc)
    metrics["d_loss"] = loss
    return loss, (metrics, v.get("batch_stats"))

  def g_loss(self, g_params, state, real, rng, labels=None):
    """L_G (see the module docstring), metrics and new G batch statistics.

    Args:
      g_params: G's parameters (differentiated).
      state: the GANState.
      real: real images in [-1, 1].
      rng: a PRNG key (codes, and the classes asked for).
      labels: class-conditional: the real images' labels; else None.

    Returns:
      (loss, (metrics, new G batch statistics)).
    """
    kind = self.config.gan.loss
    z = self.sample_z(rng, real.shape[0])
    fake, g_stats = self.generator_forward(state.g.replace(params=g_params), z)
    fake_rng, real_rng = self.reg.split(rng, 2, fold=1)
    fake = self.reg.augment(fake, fake_rng)
    # D in train mode, as in the D step; its statistics updates are dropped.
    v = state.d.variables()
    fake_labels = self.code_labels(z)
    real_aug = self.reg.augment(real, real_rng)
    if self.joint_batch:
      (f_real, _), (f_fake, fake_logits), _ = self._encode_pair(
          v, real_aug, fake, None if labels is None else (labels, fake_labels))
    else:
      f_fake, fake_logits, _ = self._encode(v, fake, fake_labels)
      if self.use_similarity:
        f_real, _, _ = self._encode(v, real_aug, labels)
    adv = jnp.mean(losses.gan_g_loss(fake_logits, kind))
    fm, metrics = self.g_feature_matching(
        v, real_aug, fake, None if labels is None else (labels, fake_labels))
    metrics["g_adv"] = adv
    loss = adv + fm
    if self.use_similarity:
      sim = jnp.mean(losses.gan_g_loss(self._sim(v, f_real, f_fake), kind))
      loss = loss + self.config.siamese.g_sim_weight * sim
      metrics["g_sim"] = sim
    if self.use_class_head:
      cls, acc = self._class_term(v, f_fake, fake_labels)
      loss = loss + self.config.siamese.g_class_weight * cls
      metrics.update(g_cls=cls, g_cls_acc=acc)
    metrics["g_loss"] = loss
    return loss, (metrics, g_stats)

  def d_eval(self, d_vars, images, labels):
    """D's (features, logits) in eval mode, with `labels` if conditional."""
    return self.disc.apply(d_vars, images, labels, train=False)

  def d_score_extras(self, d_vars, output, labels):
    """With the class head (`:cond,ac`), "class": its log-probability of
    each image's class in `labels` ([n]); else nothing."""
    if not self.use_class_head:
      return {}
    cls = jax.nn.log_softmax(self.disc.apply(
        d_vars, output[0], method=siamese.SiameseDiscriminator.class_logits))
    return {"class": jnp.take_along_axis(
        cls, jnp.asarray(labels, jnp.int32)[:, None], 1)[:, 0]}

  def eval_d_extras(self, d_vars, out_real, out_fake):
    """The similarity head's P(alike) on real-real and real-fake pairs."""
    if not self.use_similarity:
      return {}
    f_real, f_fake = out_real[0], out_fake[0]
    return {"sim_real": jax.nn.sigmoid(
                self._sim(d_vars, f_real, similarity_pairs(f_real))),
            "sim_fake": jax.nn.sigmoid(self._sim(d_vars, f_real, f_fake))}


def check_class_head(config, num_classes):
  """Raises unless the class head's weights are >= 0 and have classes.

  Args:
    config: a siamese_gan config.
    num_classes: the task's classes (0: unconditional).

  Raises:
    ValueError: a negative weight, or a weight > 0 without num_classes.
  """
  s = config.siamese
  weights = {k: float(s.get(k, 0.0))
             for k in ("d_class_weight", "g_class_weight")}
  bad = [f"siamese.{k}={w}" for k, w in weights.items() if w < 0]
  if bad:
    raise ValueError(f"{', '.join(bad)}: the class head's weights must be "
                     ">= 0 (0 = off).")
  on = [f"siamese.{k}={w}" for k, w in weights.items() if w > 0]
  if on and not num_classes:
    raise ValueError(f"{', '.join(on)} trains a class head, which needs a "
                     "class-conditional GAN: set model.num_classes (the "
                     "config's cond) or the weights to 0.")


def check_conditional(config):
  """Raises unless a class-conditional config is consistent.

  Args:
    config: a siamese_gan config with model.num_classes > 0.

  Raises:
    ValueError: num_classes differs from the number of data.classes.
  """
  want = len(cifar.resolve_classes(config.data.get("classes", "cat,dog")))
  got = int(config.model.num_classes)
  if got != want:
    raise ValueError(
        f"model.num_classes={got} but data.classes "
        f"({config.data.get('classes', 'cat,dog')!r}) selects {want}; set "
        f"model.num_classes={want} for a class-conditional GAN, or 0.")
