r"""Image classifier task, and the check of label-conditioned generators.

`ClassifierTask` trains jaxgen.models.classifier.Classifier on
`batch[config.model.input]` (the "photo" of paired batches, in [-1, 1])
against `batch["label"]`; it reports `loss` and `accuracy`.

`evaluate_generated` loads a trained classifier and a trained
label-conditioned cGAN and reports the classifier's accuracy on the real
test photos and on the photos the generator makes from the test sketches:

  python -m jaxgen.tasks.classifier --classifier_workdir=runs/cls \
      --cgan_workdir=runs/cgan_labels [--max_batches=N] \
      [--which=best|latest] [--step=N]

prints the result as JSON; --which and --step choose the cGAN's checkpoint
(default: its best when the run keeps one, as jaxgen.run.load).

`acc_generated` asks for each sketch's true label; `acc_requested` asks for
every class in turn (label swapping), which separates real conditioning from
a generator that merely reads the class off the sketch.

`evaluate_class_samples` does the same for a class-conditional GAN
(`configs/siamese_gan.py:cond`), which has no sketches: `acc_requested` is
the accuracy on samples drawn for each class in turn (equal numbers), i.e.
whether a classifier of the real photos sees the class the generator was
asked for; `acc_real` is on the GAN's real test images. The command above
takes such a run as --cgan_workdir too, and there --select=real|class
--candidates=K measures samples each the best of K draws by the GAN's
discriminator (jaxgen/sample.py).
"""

import json
import sys
from typing import Dict, List, Optional

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import backend
from jaxgen import checkpoint as ckpt_lib
from jaxgen import cli
from jaxgen import losses
from jaxgen import optim
from jaxgen import run
from jaxgen.data import pipeline
from jaxgen.models import classifier as classifier_model
from jaxgen.tasks import base


class ClassifierTask(base.Task):
  """Softmax classifier of `batch[model.input]` into data.num_classes."""

  def __init__(self, config):
    super().__init__(config)
    m, data = config.model, config.data
    if not data.get("num_classes", 0):
      raise ValueError("The classifier needs config.data.num_classes > 0 "
                       "and labelled data.")
    self.model = classifier_model.Classifier(
        num_classes=data.num_classes, width=m.width, max_width=m.max_width,
        dropout=m.dropout, downsample_impl=m.get("downsample_impl"))

  def example_batch(self, num=2):
    d, key = self.config.data, self.config.model.input
    # Paired data: sketches are grey, photos colour (as in the cGAN task).
    default = 1 if key == "sketch" else 3
    channels = int(d.get(f"{key}_channels", 0) or default)
    return {key: jnp.zeros((num, d.crop_size, d.crop_size, channels),
                           jnp.float32),
            "label": jnp.zeros((num,), jnp.int32)}

  def init_state(self, rng, batch=None):
    del batch  # Shapes come from the config.
    x = self.example_batch()[self.config.model.input]
    variables = jax.jit(lambda r, v: self.model.init(r, v, train=False))(
        base.rbg_key(rng), x)
    tx = optim.make_optimizer(self.config.optim, self.config.train.num_steps)
    return base.create_train_state(self.model, variables, tx)

  def predict(self, state, images):
    """Logits [b, num_classes] in eval mode for images in [-1, 1]."""
    return self.model.apply(state.variables(), images, train=False)

  def train_step(self, state, batch, rng):
    x, y = batch[self.config.model.input], batch["label"]

    def loss_fn(params):
      logits, upd = self.model.apply(
          state.variables(params), x, train=True,
          rngs={"dropout": base.rbg_key(rng)}, mutable=["batch_stats"])
      ce, correct = losses.classification(logits, y)
      return jnp.mean(ce), (jnp.mean(correct), upd["batch_stats"])

    (loss, (acc, stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads).replace(batch_stats=stats)
    return state, {"loss": loss, "accuracy": acc}

  def eval_step(self, state, batch, rng):
    del rng
    x, y = batch[self.config.model.input], batch["label"]
    ce, correct = losses.classification(self.predict(state, x), y)
    return {"loss": ce, "accuracy": correct}

  def samples(self, state, batch, rng):
    del state, rng
    return {"inputs": base.to_unit(batch[self.config.model.input])}


def evaluate_generated(classifier_workdir: str, cgan_workdir: str,
                       batch_size: int = 32, max_batches: int = -1,
                       which: Optional[str] = None,
                       step: Optional[int] = None,
                       select: Optional[str] = None,
                       candidates: int = 4) -> Dict[str, float]:
  """Classifier accuracy on real vs generated test photos.

  Both runs' configs come from their checkpoints; the test split is the
  cGAN's. The classifier must have been trained at the cGAN's resolution on
  the same classes.

  Args:
    classifier_workdir: workdir of a `task="classifier"` run.
    cgan_workdir: workdir of a label-conditioned `task="cgan"` run.
    batch_size: evaluation batch size.
    max_batches: stop after this many batches (-1: the whole split).
    which: the cGAN's "best" or "latest" checkpoint (default: best when
      kept, as jaxgen.run.load).
    step: a specific step of `which` (default: the newest).
    select: class-conditional GANs only: `evaluate_class_samples`'s.
    candidates: with `select`, draws per sample.

  Returns:
    {"acc_real", "acc_generated", "acc_requested", "n"}: accuracy on the
    real photos, on G(sketch, true label), and on G(sketch, c) for every
    class c (target c); n is the number of test pairs used.
  """
  cgan_config = ckpt_lib.stored_config(cgan_workdir)
  if cgan_config.task == "siamese_gan":
    return evaluate_class_samples(classifier_workdir, cgan_workdir,
                                  batch_size=batch_size, which=which,
                                  step=step, select=select,
                                  candidates=candidates)
  if select is not None:
    raise ValueError("Selecting samples by the discriminator (--select) "
                     "applies to class-conditional GANs, not to the "
                     f"{cgan_config.task!r} run in {cgan_workdir}.")
  num_classes = int(cgan_config.data.get("num_classes", 0))
  if not num_classes:
    raise ValueError(f"The cGAN in {cgan_workdir} is not label-conditioned "
                     "(data.num_classes = 0); train configs/cgan.py:labels.")
  test_ds = pipeline.build(cgan_config.data, "test")
  g_run = run.load(cgan_workdir, which, step)
  c_run = run.load(classifier_workdir)
  cgan, g_state = g_run.task, g_run.state
  clf, clf_config, c_state = c_run.task, c_run.config, c_run.state
  if int(clf_config.data.num_classes) != num_classes:
    raise ValueError(f"The classifier knows {clf_config.data.num_classes} "
                     f"classes, the cGAN {num_classes}.")
  if clf_config.data.crop_size != cgan_config.data.crop_size:
    raise ValueError(
        f"The classifier was trained at {clf_config.data.crop_size} px and "
        f"the cGAN at {cgan_config.data.crop_size} px; they must match.")
  translate = backend.jit(cgan.translate)
  predict = backend.jit(clf.predict)
  hits = {"acc_real": 0.0, "acc_generated": 0.0, "acc_requested": 0.0}
  n = 0
  for i, batch in enumerate(pipeline.eval_batches(test_ds, batch_size,
                                                  max_batches)):
    mask = batch.pop("mask")
    sketch, photo, label = batch["sketch"], batch["photo"], batch["label"]
    rng = jax.random.key(i)

    def correct(images, target):
      pred = np.asarray(jnp.argmax(predict(c_state, images), -1))
      return float(np.sum((pred == target) * mask))

    hits["acc_real"] += correct(photo, label)
    hits["acc_generated"] += correct(translate(g_state, sketch, label, rng),
                                     label)
    for c in range(num_classes):
      want = np.full_like(label, c)
      hits["acc_requested"] += correct(
          translate(g_state, sketch, want, rng), want) / num_classes
    n += int(mask.sum())
  out = {k: v / max(n, 1) for k, v in hits.items()}
  out["n"] = n
  return out


def _checked_pair(classifier_workdir: str, num_classes: int, res: int):
  """The loaded classifier run, checked against a generator's classes/res."""
  c_run = run.load(classifier_workdir)
  data = c_run.config.data
  if int(data.get("num_classes", 0)) != num_classes:
    raise ValueError(f"The classifier knows {data.get('num_classes', 0)} "
                     f"classes, the generator {num_classes}.")
  if data.crop_size != res:
    raise ValueError(
        f"The classifier was trained at {data.crop_size} px and the "
        f"generator at {res} px; they must match.")
  return c_run


def evaluate_class_samples(classifier_workdir: str, gan_workdir: str,
                           num: int = 2000, batch_size: int = 64,
                           which: Optional[str] = None,
                           step: Optional[int] = None,
                           truncation: Optional[float] = None,
                           select: Optional[str] = None,
                           candidates: int = 4) -> Dict[str, float]:
  """Classifier accuracy on real test images and on per-class samples.

  The classifier (a `configs/classifier.py` run on class sub-folders, whose
  classes are in sorted name order) must know the GAN's classes at its
  resolution; the GAN's `data.classes` must be listed in sorted order too,
  so that index i means the same class to both.

  Args:
    classifier_workdir: workdir of a `task="classifier"` run.
    gan_workdir: workdir of a class-conditional `siamese_gan` run.
    num: samples in all, split equally over the classes.
    batch_size: generation and classification batch size.
    which: the GAN's "best" or "latest" checkpoint (default as run.load).
    step: a specific step of `which` (default: the newest).
    truncation: sample with this `gan.truncation` (None: the stored one).
    select: each sample the best of `candidates` draws by the GAN's
      discriminator, "real" or "class" (jaxgen.sample.draw; seed
      config.seed + class index); None: plain samples.
    candidates: draws per sample with `select`.

  Returns:
    {"acc_real", "acc_requested", "acc_requested_<class>" per class, "n"}:
    accuracy on the GAN's real test images, on the samples asked for each
    class, and n the number of samples.

  Raises:
    ValueError: the run is not class-conditional, or the classes differ.
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxgen.data import cifar
  g_run = run.load(gan_workdir, which, step, truncation)
  task, config = g_run.task, g_run.config
  num_classes = getattr(task, "num_classes", 0)
  if not num_classes:
    raise ValueError(f"The {config.task!r} run in {gan_workdir} is not "
                     "class-conditional (model.num_classes = 0); train "
                     "configs/siamese_gan.py:cond.")
  names = [cifar.CLASS_NAMES[i]
           for i in cifar.resolve_classes(config.data.classes)]
  if names != sorted(names):
    raise ValueError(
        f"The GAN's classes {names} are not in sorted order, the order of a "
        "classifier trained on class sub-folders; retrain it with "
        f"data.classes={','.join(sorted(names))}.")
  c_run = _checked_pair(classifier_workdir, num_classes, config.data.res)
  predict = backend.jit(c_run.task.predict)

  def hits(images, target):
    pred = np.asarray(jnp.argmax(predict(c_run.state, images), -1))
    return pred == np.asarray(target)

  real, n_real = 0.0, 0
  for batch in pipeline.eval_batches(pipeline.build(config.data, "test"),
                                     batch_size):
    mask = np.asarray(batch.pop("mask"))
    labels = task.batch_labels(batch)
    real += float(np.sum(hits(base.to_signed(batch["image"]), labels) * mask))
    n_real += int(mask.sum())
  out = {"acc_real": real / max(n_real, 1)}
  per_class = -(-num // num_classes)
  size = max(1, min(batch_size, per_class))
  key = jax.random.key(config.seed)
  accs = []

  def class_samples(c):
    if select is not None:
      # pylint: disable-next=g-import-not-at-top
      from jaxgen import sample  # jaxgen.sample -> run -> tasks -> here.
      return sample.draw(g_run, per_class, config.seed + c, size, c, select,
                         candidates)
    return np.concatenate([np.asarray(g_run.generate(
        jax.random.fold_in(key, c * 100_003 + i), size,
        np.full((size,), c, np.int32))) for i in range(-(-per_class // size))])

  for c in range(num_classes):
    images = class_samples(c)[:per_class]
    accs.append(float(np.mean(np.concatenate([
        hits(base.to_signed(images[i:i + size]), c)
        for i in range(0, per_class, size)]))))
    out[f"acc_requested_{names[c]}"] = accs[-1]
  out["acc_requested"] = float(np.mean(accs))
  out["n"] = per_class * num_classes
  return out


def _define(fv: flags.FlagValues, argv: List[str]):
  del argv
  flags.DEFINE_string("classifier_workdir", None,
                      "Workdir of the trained classifier run.", flag_values=fv)
  cli.define_run_flags(fv, "Workdir of the label-conditioned cGAN run (or "
                       "of a class-conditional Siamese GAN).",
                       workdir_flag="cgan_workdir")
  cli.define_select_flags(fv)
  flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("max_batches", -1, "Stop after this many batches "
                       "(-1: the whole test split).", flag_values=fv)
  flags.mark_flags_as_required(["classifier_workdir", "cgan_workdir"],
                               flag_values=fv)


def _evaluate(fv: flags.FlagValues):
  result = evaluate_generated(fv.classifier_workdir, fv.cgan_workdir,
                              fv.batch_size, fv.max_batches, which=fv.which,
                              step=fv.step, select=fv.select,
                              candidates=fv.candidates)
  print(json.dumps(result, indent=2))


def main(argv=None) -> int:
  """evaluate_generated's command line; returns the exit status."""
  return cli.run(_evaluate, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
