"""Label following for the label-conditioned cGAN (`config.gan` options).

A generator that is only ever asked for the class its sketch already shows
can ignore the label: measured with concat and projection injection alike,
G(sketch, c) is classified as the requested c about half of the time for
two classes (README "Results"). Two options make the label matter; both are
off by default:

  gan.label_swap = p       each training example asks, with probability p,
                           for a class other than its own (uniform over the
                           others). Such an output has no paired photo: the
                           L1 term averages over the kept examples only; D
                           sees (sketch, G(sketch, c), c) as a fake whatever
                           c is, so the swapped outputs must look real too.
  gan.aux_classifier = w   an image-only classifier (jaxgen/models/
                           classifier.py at D's widths), trained with D on
                           the real photos and their labels, with its own
                           `config.aux_optim` (metric d_cls, d_cls_acc); G
                           adds w times its cross-entropy on
                           G(sketch, c) against the requested c (g_cls, and
                           g_cls_acc the fraction classified as asked).
                           This is StarGAN's domain-classification loss; the
                           classifier sees the photo alone, so, unlike a
                           head on the (sketch, photo) PatchGAN, it cannot
                           read the class off the sketch. With gan.diffaug
                           on, it sees D's DiffAugment as well (the real
                           photos it learns from and the outputs it judges,
                           each with draws of its own): augmentation helps
                           a classifier of a few thousand photos, and G's
                           class cues must then survive colour, translation
                           and cutout rather than be pixel patterns that
                           only this network reads.

  gan.aux_classifier_init  the workdir of a trained classifier run
                           (configs/classifier.py at D's widths, same data
                           and resolution) whose weights the auxiliary
                           classifier starts from, rather than from random
                           ones: trained beside D on a batch of 8 it sees
                           too few photos to know the classes well
                           (~70% after 4000 steps on CIFAR cats/dogs), which
                           bounds the class signal G gets. Read when
                           training starts afresh (Task.load_pretrained),
                           not on a resume: a trained cGAN keeps the
                           classifier in its own checkpoint, so loading it
                           needs no other run. Use another run than the
                           evaluation classifier (e.g. another seed), so
                           that G is not measured by the network it was
                           trained against.

The classifier's TrainState is the `aux` field of the GAN state (None when
the option is off, so states and checkpoints are unchanged), updated on
every discriminator update. The evaluation classifier of
jaxgen/tasks/classifier.py is a separate network trained on its own: the
measurement is not made by the network G was trained against.
"""

from typing import Optional, Tuple

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen import losses
from jaxgen import optim
from jaxgen.models import classifier as classifier_model
from jaxgen.tasks import base
from jaxgen.tasks import gan_base


def options(gan_cfg: ml_collections.ConfigDict) -> Tuple[float, float]:
  """(label_swap probability, aux_classifier weight); 0 when absent."""
  return (float(gan_cfg.get("label_swap", 0.0)),
          float(gan_cfg.get("aux_classifier", 0.0)))


def check(gan_cfg: ml_collections.ConfigDict, num_classes: int):
  """Raises ValueError for option values the task cannot honour.

  Args:
    gan_cfg: `config.gan`.
    num_classes: the data's classes (0: no labels).
  """
  swap, weight = options(gan_cfg)
  if not 0.0 <= swap < 1.0:
    raise ValueError(f"gan.label_swap must be in [0, 1), got {swap}.")
  if weight < 0:
    raise ValueError(f"gan.aux_classifier must be >= 0, got {weight}.")
  if (swap or weight) and num_classes < 2:
    raise ValueError("gan.label_swap and gan.aux_classifier need labelled "
                     "data with at least 2 classes (data.num_classes), got "
                     f"{num_classes}.")
  if gan_cfg.get("aux_classifier_init", "") and not weight:
    raise ValueError("gan.aux_classifier_init is set but gan.aux_classifier "
                     "is 0, so there is no auxiliary classifier to start "
                     "from it; set a weight > 0 or clear the path.")
  if swap and (gan_cfg.get("feature_matching", 0.0)
               or gan_cfg.get("perceptual_weight", 0.0)):
    raise ValueError("gan.label_swap has no paired photo for a swapped "
                     "example, so it does not go with the paired terms "
                     "gan.feature_matching or gan.perceptual_weight.")


def requested_labels(rng, labels, num_classes: int, swap: float
                     ) -> Tuple[jax.Array, jax.Array]:
  """The labels G is asked for, and which examples kept their own.

  Args:
    rng: PRNG key.
    labels: [b] int true labels.
    num_classes: K >= 2.
    swap: probability that an example asks for another class.

  Returns:
    (requested [b] int, kept [b] float32: 1 where requested == labels).
  """
  flip_rng, class_rng = jax.random.split(rng)
  flip = jax.random.bernoulli(flip_rng, swap, labels.shape)
  # An offset in 1..K-1 moves to each other class with equal probability.
  offset = jax.random.randint(class_rng, labels.shape, 1, num_classes)
  requested = jnp.where(flip, (labels + offset) % num_classes, labels)
  return requested.astype(labels.dtype), (~flip).astype(jnp.float32)


def make_classifier(config: ml_collections.ConfigDict, num_classes: int,
                    dtype=None) -> classifier_model.Classifier:
  """The auxiliary classifier at the discriminator's widths."""
  m = config.model
  return classifier_model.Classifier(
      num_classes=num_classes, width=m.d_width, max_width=m.max_width,
      downsample_impl=m.get("downsample_impl"), dtype=dtype)


def pretrained_variables(config: ml_collections.ConfigDict, module,
                         photo) -> Optional[dict]:
  """The variables of `gan.aux_classifier_init`'s run (None when unset).

  Args:
    config: the cGAN's config.
    module: `make_classifier(...)`.
    photo: [b, h, w, c] example photos.

  Returns:
    The classifier run's {"params", "batch_stats"} (its best checkpoint when
    kept), as numpy arrays.

  Raises:
    ValueError: the run is not a classifier of these classes, resolution
      and widths.
  """
  workdir = config.gan.get("aux_classifier_init", "")
  if not workdir:
    return None
  # Here, not at the top: jaxgen.run builds tasks, this one included.
  from jaxgen import run  # pylint: disable=g-import-not-at-top
  loaded = run.load(workdir)
  cfg = loaded.config
  want = {"task": "classifier", "data.num_classes": module.num_classes,
          "data.crop_size": config.data.crop_size,
          "model.width": module.width, "model.max_width": module.max_width}
  got = {"task": cfg.task, "data.num_classes": cfg.data.get("num_classes"),
         "data.crop_size": cfg.data.get("crop_size"),
         "model.width": cfg.model.get("width"),
         "model.max_width": cfg.model.get("max_width")}
  wrong = [f"{k} {got[k]!r} (needs {v!r})" for k, v in want.items()
           if got[k] != v]
  if wrong:
    raise ValueError(f"gan.aux_classifier_init={workdir} does not fit the "
                     f"auxiliary classifier: {'; '.join(wrong)}.")
  variables = jax.tree_util.tree_map(
      np.asarray, flax.core.unfreeze(loaded.state.variables()))
  expected = jax.eval_shape(lambda: module.init(jax.random.key(0), photo,
                                                train=False))
  shapes = lambda tree: {k: np.shape(v) for k, v in traverse_util.flatten_dict(
      flax.core.unfreeze(tree)).items()}
  if shapes(variables) != shapes(expected):
    raise ValueError(f"gan.aux_classifier_init={workdir}: its classifier's "
                     "variables differ in structure from the auxiliary "
                     "classifier's.")
  return variables


def init_state(module, rng, photo, optim_cfg: ml_collections.ConfigDict,
               d_updates: int) -> base.TrainState:
  """The classifier's TrainState.

  Args:
    module: `make_classifier(...)`.
    rng: init key.
    photo: [b, h, w, c] example photos.
    optim_cfg: its optimizer (`config.aux_optim`, else `config.d_optim`).
    d_updates: the run's discriminator updates (the schedule's length).

  Returns:
    A TrainState with random variables (`with_variables` puts in trained
    ones).
  """
  variables = jax.jit(lambda r, x: module.init(r, x, train=False))(rng, photo)
  return base.create_train_state(module, variables,
                                 optim.make_optimizer(optim_cfg, d_updates))


def with_variables(ts: base.TrainState, variables: dict) -> base.TrainState:
  """`ts` with `variables` ({"params", "batch_stats"}) as its own.

  Each array is placed like the one it replaces (the state's sharding); the
  optimizer state is left as it is (a fresh one does not depend on the
  parameters' values).

  Args:
    ts: the auxiliary classifier's fresh TrainState.
    variables: `pretrained_variables(...)`, of the same structure.

  Returns:
    The TrainState.
  """
  def place(new, old):
    return jax.device_put(np.asarray(new, old.dtype), old.sharding)

  current = {"params": ts.params, "batch_stats": ts.batch_stats}
  placed = jax.tree_util.tree_map(place, {
      "params": variables["params"],
      "batch_stats": variables.get("batch_stats")}, current)
  return ts.replace(**placed)


def _loss(ts: base.TrainState, params, images, labels, rng):
  """Mean cross-entropy in train mode; (loss, (accuracy, batch_stats))."""
  logits, upd = ts.apply_fn(ts.variables(params), images, train=True,
                            rngs={"dropout": rng}, mutable=["batch_stats"])
  ce, correct = losses.classification(logits, labels)
  return jnp.mean(ce), (jnp.mean(correct), upd["batch_stats"])


def classifier_update(ts: base.TrainState, photos, labels, rng, apply: bool
                      ) -> Tuple[base.TrainState, dict]:
  """One cross-entropy step of the classifier on real photos.

  Args:
    ts: the classifier's TrainState.
    photos: [b, h, w, c] real photos in [-1, 1].
    labels: [b] their labels.
    rng: dropout key.
    apply: whether to apply the update (the D alternation).

  Returns:
    (TrainState, {"d_cls", "d_cls_acc"}).
  """
  (loss, (acc, stats)), grads = jax.value_and_grad(
      lambda p: _loss(ts, p, photos, labels, rng), has_aux=True)(ts.params)
  if apply:
    ts = gan_base.apply_updates(ts, grads, None, stats)
  return ts, {"d_cls": loss, "d_cls_acc": acc}


def generator_term(ts: Optional[base.TrainState], fakes, requested, rng):
  """G's classification loss on its outputs (StarGAN's L_cls^f).

  Args:
    ts: the classifier's TrainState; its statistics updates are discarded.
    fakes: [b, h, w, c] generated photos in [-1, 1].
    requested: [b] the labels G was asked for.
    rng: dropout key.

  Returns:
    (loss, {"g_cls", "g_cls_acc"}).
  """
  loss, (acc, _) = _loss(ts, ts.params, fakes, requested, rng)
  return loss, {"g_cls": loss, "g_cls_acc": acc}
