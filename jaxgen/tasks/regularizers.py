"""Discriminator-side stability options shared by the GAN families.

Read from `config.gan` (all off by default; see configlib.gan_defaults):

  diffaug           DiffAugment policy (jaxgen/diffaugment.py) applied to
                    real and generated images before every discriminator call
                    of a training step (D and G steps), never in evaluation.
  gp_weight         lambda * E[(||grad D(x_hat)|| - 1)^2] added to D's loss
                    (WGAN-GP), metric `d_gp` (the unweighted penalty).
  r1_weight         gamma of R1: (gamma / 2) * E||grad D(real)||^2 added to
  r1_every          D's loss on D updates with d.step % r1_every == 0 only,
                    multiplied by r1_every there (StyleGAN2's lazy
                    regularisation); metric `d_r1` (the unweighted squared
                    gradient norm; 0 on the steps in between).
  feature_matching  weight of the generator's D-feature matching term
                    (losses.feature_matching), metric `g_fm`.

The penalties differentiate D through the augmentation, w.r.t. the images
before it (as the DiffAugment reference does for R1). Their D calls run in
training mode like the loss's, and the caller discards any statistics they
update, so the batch statistics a step threads through its real and fake
calls are unchanged by them.

Intermediate features for feature matching come from flax's
`capture_intermediates`: the outputs of every convolution and dense layer of
the discriminator with more than one output channel (the logit layers have
one), so the model files need no changes.
"""

from typing import Callable, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxgen import diffaugment
from jaxgen import losses
from jaxgen.models import layers


def _is_feature_layer(module: nn.Module, method_name: str) -> bool:
  return (method_name == "__call__" and
          isinstance(module, (nn.Conv, nn.Dense, layers.DownConv)) and
          module.features > 1)


def apply_d(module: nn.Module, variables, *args, features: bool = False,
            **kwargs):
  """A training-mode discriminator call.

  Args:
    module: the discriminator.
    variables: its variables.
    *args: its inputs.
    features: also return the intermediate layer outputs.
    **kwargs: passed to `module.apply`.

  Returns:
    (output, new batch_stats or None, list of feature maps or None).
  """
  mutable = ["batch_stats"] + (["intermediates"] if features else [])
  out, upd = module.apply(
      variables, *args, mutable=mutable,
      capture_intermediates=_is_feature_layer if features else False,
      **kwargs)
  feats = (jax.tree_util.tree_leaves(upd["intermediates"]) if features
           else None)
  return out, upd.get("batch_stats"), feats


def for_penalties(module: nn.Module) -> nn.Module:
  """The discriminator with the DownConv lowering for gradient penalties.

  The penalties differentiate D's input gradient once more; the default CPU
  lowering is slow at that (jaxgen/models/layers.py), so penalty calls use
  `layers.second_order_down_impl`. The lowerings compute the same
  convolution, so the parameters and outputs are those of `module`.

  Args:
    module: a discriminator with a `downsample_impl` field.

  Returns:
    `module`, or a clone with another `downsample_impl`.
  """
  impl = getattr(module, "downsample_impl", None)
  chosen = layers.second_order_down_impl(impl)
  return module if chosen == impl else module.clone(downsample_impl=chosen)


def with_stats(variables, batch_stats):
  """`variables` with new batch statistics (unchanged for None)."""
  if batch_stats is None:
    return variables
  return dict(variables, batch_stats=batch_stats)


def d_args(images, labels=None) -> tuple:
  """A discriminator's inputs: the images, and the labels of a conditional
  D (an unconditional D is called on the images alone: labels None)."""
  return (images,) if labels is None else (images, labels)


def d_call(module: nn.Module) -> Callable:
  """`call(variables, images, labels)` for `apply_d_pair`: a training-mode
  call of `module` (on images alone for labels None) that returns (output,
  variables with its updated statistics)."""

  def call(variables, images, labels):
    out, stats, _ = apply_d(module, variables, *d_args(images, labels))
    return out, with_stats(variables, stats)

  return call


def apply_d_pair(call: Callable, variables, real, fake, labels=None,
                 joint: bool = False):
  """Training-mode discriminator calls on real and generated images.

  Separately (DCGAN's way, the default), each batch is normalised by its own
  BatchNorm statistics, the real call's updated statistics threaded into
  the fake call. Jointly (`gan.d_joint_batch`), the two batches go through
  one call on their concatenation, so every BatchNorm normalises the mix and
  a batch's statistics alone cannot tell D which kind it holds.

  Args:
    call: `call(variables, images, labels or None) -> (output, variables)`,
      e.g. `d_call(discriminator)`; outputs are pytrees of batch-major
      arrays.
    variables: D's variables.
    real: real images [n, ...].
    fake: generated images [m, ...].
    labels: None, or (real labels [n], fake labels [m]).
    joint: one call on both batches.

  Returns:
    (output on real, output on fake, variables after the calls).
  """
  real_labels, fake_labels = labels if labels is not None else (None, None)
  if not joint:
    out_real, variables = call(variables, real, real_labels)
    out_fake, variables = call(variables, fake, fake_labels)
    return out_real, out_fake, variables
  n = real.shape[0]
  y = (None if real_labels is None
       else jnp.concatenate([real_labels, fake_labels]))
  out, variables = call(variables, jnp.concatenate([real, fake]), y)
  return (jax.tree_util.tree_map(lambda t: t[:n], out),
          jax.tree_util.tree_map(lambda t: t[n:], out), variables)


class Regularizers:
  """The parsed options and the terms they add (see the module docstring).

  Attributes:
    policy: the DiffAugment ops (empty: off).
    gp_weight, r1_weight, r1_every, fm_weight: the options.
  """

  def __init__(self, gan_cfg: ml_collections.ConfigDict):
    self.policy = diffaugment.parse_policy(gan_cfg.get("diffaug", ""))
    self.gp_weight = float(gan_cfg.get("gp_weight", 0.0))
    self.r1_weight = float(gan_cfg.get("r1_weight", 0.0))
    self.r1_every = int(gan_cfg.get("r1_every", 16))
    self.fm_weight = float(gan_cfg.get("feature_matching", 0.0))
    for name, value in (("gp_weight", self.gp_weight),
                        ("r1_weight", self.r1_weight),
                        ("feature_matching", self.fm_weight)):
      if value < 0:
        raise ValueError(f"gan.{name} must be >= 0 (0 = off), got {value}.")
    if self.r1_every < 1:
      raise ValueError(f"gan.r1_every must be >= 1, got {self.r1_every}.")

  @property
  def feature_matching(self) -> bool:
    return self.fm_weight > 0

  def split(self, rng, num: int, fold=None):
    """`num` keys for the options' random draws.

    Args:
      rng: a PRNG key (may be None when no option draws).
      num: how many keys.
      fold: if given, the keys derive from fold_in(rng, fold), so a caller
        may keep using `rng` itself for its own draws.

    Returns:
      A tuple of keys, or of Nones when neither DiffAugment nor the gradient
      penalty is on: steps without them use their keys exactly as before.
    """
    if not (self.policy or self.gp_weight > 0):
      return (None,) * num
    if fold is not None:
      rng = jax.random.fold_in(rng, fold)
    return tuple(jax.random.split(rng, num))

  def augment(self, x, rng):
    """DiffAugment of images (x itself when off)."""
    return diffaugment.augment(x, rng, self.policy)

  def augment_pair(self, condition, x, rng):
    """DiffAugment of (condition, image) pairs with shared geometry."""
    return diffaugment.augment_pair(condition, x, rng, self.policy)

  def d_terms(self, d_fn: Callable, real, fake, rng, d_step,
              suffix: str = "") -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """The weighted GP and R1 terms of D's loss, and their metrics.

    Args:
      d_fn: images -> D logits (arrays or a list per scale), with the
        augmentation applied inside and statistics updates discarded.
      real: real images (before augmentation).
      fake: generated images (before augmentation).
      rng: PRNG key of the GP interpolation.
      d_step: the discriminator's update count (lazy R1).
      suffix: appended to the metric names (one D of several).

    Returns:
      (loss term, metrics); the term is 0.0 with both penalties off.
    """
    total, metrics = 0.0, {}
    if self.gp_weight > 0:
      gp = jnp.mean(losses.gradient_penalty(d_fn, real, fake, rng))
      total = total + self.gp_weight * gp
      metrics["d_gp" + suffix] = gp
    if self.r1_weight > 0:
      r1_fn = lambda: jnp.mean(losses.r1_penalty(d_fn, real))
      if self.r1_every > 1:
        # cond, not where: the double backprop runs on R1 steps only.
        r1 = jax.lax.cond(d_step % self.r1_every == 0, r1_fn,
                          lambda: jnp.zeros((), jnp.float32))
      else:
        r1 = r1_fn()
      total = total + 0.5 * self.r1_weight * self.r1_every * r1
      metrics["d_r1" + suffix] = r1
    return total, metrics

  def fm_term(self, real_feats: Sequence, fake_feats: Sequence,
              paired: bool = False, suffix: str = ""):
    """The weighted feature-matching term of G's loss and its metric.

    Args:
      real_feats: D features of real images (held constant here).
      fake_feats: D features of the generated images.
      paired: the pix2pixHD per-example form (conditional D).
      suffix: appended to the metric name.

    Returns:
      (loss term, metrics).
    """
    fm = jnp.mean(losses.feature_matching(
        jax.lax.stop_gradient(list(real_feats)), fake_feats, paired))
    return self.fm_weight * fm, {"g_fm" + suffix: fm}
