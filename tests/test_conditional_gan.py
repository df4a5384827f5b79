"""The class-conditional Siamese GAN (`configs/siamese_gan.py:cond`): the
projection discriminator, class codes, label mapping and checks, a tiny run
sampled per class, and the classifier check of its samples."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import compare
from jaxgen import configlib
from jaxgen import losses
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen import train
from jaxgen.models import dcgan
from jaxgen.models import resgan
from jaxgen.models import siamese
from jaxgen.tasks import classifier
from jaxgen.tasks import siamese_gan
from tests.conftest import config_with

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(variant="tiny,cond", **updates):
  return config_with("siamese_gan", variant, **updates)


def _key(seed):
  return jax.random.key(seed, impl="rbg")


def test_projection_adds_the_class_embedding_dot_features():
  """D(x, y) - D(x, y') = (e_y - e_y') . f(x), and the label-free logit
  is the plain head's."""
  disc = siamese.SiameseDiscriminator(width=4, max_width=8, sim_hidden=4,
                                      num_classes=3, norm="none")
  x = jax.random.normal(_key(0), (2, 16, 16, 3))
  v = disc.init(_key(1), x)
  embed = v["params"]["projection"]["Embed_0"]["embedding"]
  assert embed.shape == (3, 4 * 4 * 8)
  y0, y2 = jnp.array([0, 0]), jnp.array([2, 2])
  feats, logit0 = disc.apply(v, x, y0, train=False)
  _, logit2 = disc.apply(v, x, y2, train=False)
  np.testing.assert_allclose(logit2 - logit0,
                             feats @ (embed[2] - embed[0]), rtol=1e-4,
                             atol=1e-5)
  head = v["params"]["adv_head"]
  plain = feats @ head["kernel"][:, 0] + head["bias"][0]
  np.testing.assert_allclose(logit0 - feats @ embed[0], plain, rtol=1e-4,
                             atol=1e-5)
  with pytest.raises(ValueError, match="needs labels"):
    disc.apply(v, x, train=False)


# (generator, its BatchNorms at 16 px): DCGAN's after the dense layer and
# the one hidden UpConv; the residual one's two per block and the output's.
@pytest.mark.parametrize("generator,num_norms",
                         [(dcgan.Generator, 2), (resgan.ResGenerator, 5)],
                         ids=["dcgan", "resnet"])
def test_class_norm_scales_and_shifts_per_class(generator, num_norms):
  """G's conditional batch norm follows every BatchNorm, starts as the
  identity (the output equals that of the same weights without it) and a
  shift of class 1 changes only the images asked for class 1."""
  kw = dict(res=16, channels=3, width=4, max_width=8)
  gen = generator(num_classes=2, **kw)
  z = jax.random.normal(_key(0), (4, 6))
  codes = jnp.concatenate([z, jax.nn.one_hot(jnp.array([0, 1, 0, 1]), 2)], 1)
  v = gen.init(_key(1), codes)
  films = {k for k in v["params"] if k.startswith("ClassFiLM")}
  assert {"ClassFiLM_0", "ClassFiLM_1"} <= films
  assert len(films) == num_norms == len(
      [k for k in v["params"] if k.startswith("BatchNorm")])
  plain_params = {k: p for k, p in v["params"].items()
                  if not k.startswith("ClassFiLM")}
  plain = generator(**kw).apply(
      {"params": plain_params, "batch_stats": v["batch_stats"]}, codes,
      train=False)
  np.testing.assert_allclose(gen.apply(v, codes, train=False), plain,
                             atol=1e-6)
  params = jax.tree_util.tree_map(lambda a: a, v["params"])
  shift = params["ClassFiLM_1"]["shift"]["embedding"]
  params["ClassFiLM_1"]["shift"]["embedding"] = shift.at[1].set(1.0)
  moved = gen.apply({"params": params, "batch_stats": v["batch_stats"]},
                    codes, train=False)
  change = np.abs(np.asarray(moved - plain)).max(axis=(1, 2, 3))
  assert change[0] == change[2] == 0.0
  assert change[1] > 1e-3 and change[3] > 1e-3


def test_codes_carry_the_requested_class():
  task = siamese_gan.SiameseGANTask(_config())
  z = task.sample_z(_key(0), 6, jnp.array([0, 1, 1, 0, 1, 0]))
  z_dim = task.config.model.z_dim
  assert z.shape == (6, z_dim + 2)
  np.testing.assert_array_equal(task.code_labels(z), [0, 1, 1, 0, 1, 0])
  np.testing.assert_array_equal(z[:, z_dim:].sum(-1), 1.0)
  drawn = task.code_labels(task.sample_z(_key(1), 400))
  assert 150 < int(drawn.sum()) < 250  # Both classes, about equally.
  truncated = siamese_gan.SiameseGANTask(_config(**{"gan.truncation": 0.5}))
  zt = truncated.sampling_z(_key(2), 64, 1)
  assert float(jnp.abs(zt[:, :z_dim]).max()) <= 0.5
  np.testing.assert_array_equal(truncated.code_labels(zt), 1)


def test_unconditional_codes_unchanged_and_refuse_labels():
  """Unconditional runs draw z from the key itself (stored runs sample the
  same images as before); asking them for a class is an error."""
  task = siamese_gan.SiameseGANTask(_config("tiny"))
  assert task.num_classes == 0 and task.class_names == []
  np.testing.assert_array_equal(
      task.sample_z(_key(3), 4),
      jax.random.normal(_key(3), (4, task.config.model.z_dim)))
  assert task.code_labels(task.sample_z(_key(3), 4)) is None
  state = task.init_state(_key(0))
  with pytest.raises(ValueError, match="unconditional"):
    task.generate(state, _key(1), 2, jnp.zeros((2,), jnp.int32))


def test_cifar_ids_map_to_class_indices():
  task = siamese_gan.SiameseGANTask(_config())
  assert task.class_names == ["cat", "dog"]
  ids = jnp.array([5, 3, 3, 5])  # CIFAR-10 dog, cat.
  np.testing.assert_array_equal(task.batch_labels({"label": ids}),
                                [1, 0, 0, 1])
  swapped = siamese_gan.SiameseGANTask(_config(**{"data.classes": "dog,cat"}))
  np.testing.assert_array_equal(swapped.batch_labels({"label": ids}),
                                [0, 1, 1, 0])


@pytest.mark.parametrize("updates,match", [
    ({"model.num_classes": 3}, "selects 2"),
    ({"model.num_classes": 1}, "selects 2"),
])
def test_inconsistent_conditional_configs_are_refused(updates, match):
  with pytest.raises(ValueError, match=match):
    siamese_gan.SiameseGANTask(_config(**updates))


def test_d_loss_judges_images_with_their_labels():
  """With only the projection of class 1 non-zero, D's loss on a pair of
  batches depends on the labels exactly through e_1 . f."""
  task = siamese_gan.SiameseGANTask(_config(**{"model.d_norm": "none"}))
  real = jax.random.uniform(_key(1), (4, 16, 16, 3)) * 2 - 1
  state = task.init_state(_key(0))
  d = state.d
  params = jax.tree_util.tree_map(lambda a: a, d.params)
  params["projection"]["Embed_0"]["embedding"] = (
      params["projection"]["Embed_0"]["embedding"].at[0].set(0.0))
  zeros, ones = jnp.zeros((4,), jnp.int32), jnp.ones((4,), jnp.int32)
  loss = lambda labels: task.d_loss(params, d, real, -real, None, labels)
  _, (as_cat, _) = loss((zeros, zeros))
  _, (as_dog, _) = loss((ones, ones))
  feats_real, base_real = task.disc.apply(d.variables(params), real, zeros,
                                          train=False)
  e1 = params["projection"]["Embed_0"]["embedding"][1]
  want = jax.nn.sigmoid(base_real + feats_real @ e1).mean()
  assert float(as_dog["d_real"]) == pytest.approx(float(want), rel=1e-4)
  assert float(as_cat["d_real"]) == pytest.approx(
      float(jax.nn.sigmoid(base_real).mean()), rel=1e-4)
  assert abs(float(as_dog["d_real"]) - float(as_cat["d_real"])) > 1e-4


def test_penalties_ask_d_about_the_real_images_classes():
  """R1 and WGAN-GP differentiate D(., y_real): against the gradients of
  the logit given the real labels, which differ from the fakes' labels'."""
  task = siamese_gan.SiameseGANTask(_config(**{
      "model.d_norm": "none", "gan.r1_weight": 2.0, "gan.r1_every": 1,
      "gan.gp_weight": 10.0}))
  state = task.init_state(_key(0))
  v = state.d.variables()
  real = jax.random.uniform(_key(1), (4, 16, 16, 3)) * 2 - 1
  fake = jax.random.uniform(_key(2), (4, 16, 16, 3)) * 2 - 1
  y_real = jnp.array([0, 1, 1, 0])
  y_fake = 1 - y_real
  term, m = task.d_penalties(v, state.d, real, fake, _key(3),
                             (y_real, y_fake))
  logit = lambda y: lambda x: task.disc.apply(v, x, y, train=False)[1]
  gp_rng = task.reg.split(_key(3), 2)[1]
  r1 = lambda y: float(jnp.mean(losses.r1_penalty(logit(y), real)))
  gp = lambda y: float(jnp.mean(losses.gradient_penalty(logit(y), real,
                                                        fake, gp_rng)))
  assert float(m["d_r1"]) == pytest.approx(r1(y_real), rel=1e-4)
  assert float(m["d_gp"]) == pytest.approx(gp(y_real), rel=1e-4)
  assert float(term) == pytest.approx(r1(y_real) + 10.0 * gp(y_real),
                                      rel=1e-4)
  assert abs(r1(y_fake) - r1(y_real)) > 1e-3 * r1(y_real)
  assert abs(gp(y_fake) - gp(y_real)) > 1e-3 * gp(y_real)


def test_feature_matching_with_classes():
  """G's feature matching runs on a class-conditional D (each batch with
  its own classes; it needs them) and is 0 exactly when the batches
  match."""
  task = siamese_gan.SiameseGANTask(_config(**{
      "gan.feature_matching": 1.0}))
  v = task.init_state(_key(0)).d.variables()
  real = jax.random.uniform(_key(1), (4, 16, 16, 3)) * 2 - 1
  y = (jnp.array([0, 1, 1, 0]), jnp.array([1, 1, 0, 0]))
  term, m = task.g_feature_matching(v, real, real, y)
  assert float(term) == float(m["g_fm"]) == 0.0
  term, m = task.g_feature_matching(v, real, -real, y)
  assert float(term) == float(m["g_fm"]) > 1e-4


def test_fakes_are_judged_with_the_class_g_was_asked_for(monkeypatch):
  """In both updates D sees each fake with the class of its own code, and
  each real image with its own label."""
  task = siamese_gan.SiameseGANTask(_config())
  state = task.init_state(_key(0))
  real = jnp.zeros((8, 16, 16, 3))
  real_labels = jnp.ones((8,), jnp.int32)  # The codes ask for both.
  codes, seen = [], []
  sample_z = task.sample_z
  encode = task._encode  # pylint: disable=protected-access
  monkeypatch.setattr(task, "sample_z",
                      lambda *a, **k: codes.append(sample_z(*a, **k))
                      or codes[-1])
  monkeypatch.setattr(task, "_encode",
                      lambda v, x, labels=None: seen.append(labels)
                      or encode(v, x, labels))
  task._d_update(state, real, _key(1), False, real_labels)  # pylint: disable=protected-access
  np.testing.assert_array_equal(seen[0], real_labels)
  np.testing.assert_array_equal(seen[1], task.code_labels(codes[-1]))
  codes.clear()
  seen.clear()
  task._g_update(state, real, _key(2), False, real_labels)  # pylint: disable=protected-access
  np.testing.assert_array_equal(seen[0], task.code_labels(codes[-1]))
  np.testing.assert_array_equal(seen[1], real_labels)
  assert len(set(np.asarray(task.code_labels(codes[-1])).tolist())) == 2


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
  """A tiny class-conditional run (4 steps) and a tiny classifier run."""
  work = tmp_path_factory.mktemp("cond")
  config = _config()
  config.train.update(num_steps=4)
  result = train.train_and_evaluate(config, str(work / "gan"))
  clf_config = configlib.load_config_file(
      os.path.join(ROOT, "configs", "classifier.py:tiny"))
  clf_config.train.update(num_steps=1, eval_every=1, checkpoint_every=1,
                          sample_every=1, log_every=1)
  clf = train.train_and_evaluate(clf_config, str(work / "cls"))
  return result, clf


def test_tiny_conditional_run_samples_each_class(cond_run, tmp_path):
  result, _ = cond_run
  assert result.step == 4
  assert {"eval/swd", "eval/d_real", "eval/d_fake"} <= set(
      result.eval_metrics)
  assert all(np.isfinite(v) for v in result.eval_metrics.values())
  r = run_lib.load(result.workdir, "latest")
  cats = sample.draw(r, 3, seed=1, label=0)
  dogs = sample.draw(r, 3, seed=1, label=1)
  assert cats.shape == (3, 16, 16, 3)
  assert np.abs(cats - dogs).max() > 1e-4  # The class reaches the image.
  found = sample.sample_run(r, str(tmp_path / "dogs"), num=3, seed=1,
                            label="dog")
  assert len(found["written"]) == 4
  with pytest.raises(sample.cli.UserError, match="cat, dog"):
    sample.sample_run(r, str(tmp_path / "x"), num=2, label="horse")


def _brightness_classifier(monkeypatch):
  """Classifier logits that say class 1 iff the image's mean is > 0."""
  def predict(self, state, images):
    del self, state
    m = jnp.mean(images, axis=(1, 2, 3))
    return jnp.stack([-m, m], -1)
  monkeypatch.setattr(classifier.ClassifierTask, "predict", predict)


def test_class_samples_scored_by_the_class_asked_for(cond_run, monkeypatch):
  """With a classifier that reads the class off the brightness and a
  generator that draws dark cats and bright dogs, every sample is of the
  class asked for; with one that draws only bright images, half are."""
  result, clf = cond_run
  _brightness_classifier(monkeypatch)
  asked = []

  def generate(self, rng, num, labels=None):
    del self, rng
    asked.append(np.asarray(labels))
    return jnp.where(jnp.asarray(labels)[:, None, None, None] == 1, 0.9,
                     0.1) * jnp.ones((num, 16, 16, 3))
  monkeypatch.setattr(run_lib.Run, "generate", generate)
  out = classifier.evaluate_class_samples(clf.workdir, result.workdir,
                                          num=10, batch_size=4)
  assert out["acc_requested"] == 1.0 and out["n"] == 10
  assert {int(a[0]) for a in asked} == {0, 1}
  # The real test images scored by the same rule, independently.
  r = run_lib.load(result.workdir)
  test = r.task.config.data
  from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top
  batch = pipeline.first_batch(pipeline.build(test, "test"), 64)
  keep = np.asarray(batch["mask"]) > 0
  bright = np.asarray(jnp.mean(batch["image"] * 2 - 1, (1, 2, 3)) > 0)
  labels = np.asarray(r.task.batch_labels(batch))
  assert out["acc_real"] == pytest.approx(np.mean((bright == labels)[keep]))

  monkeypatch.setattr(run_lib.Run, "generate",
                      lambda self, rng, num, labels=None:
                      0.9 * jnp.ones((num, 16, 16, 3)))
  out = classifier.evaluate_class_samples(clf.workdir, result.workdir,
                                          num=10, batch_size=4)
  assert out["acc_requested_cat"] == 0.0
  assert out["acc_requested_dog"] == 1.0
  assert out["acc_requested"] == 0.5
  # compare.evaluate_one adds the same figures to a run's metrics.
  got = compare.evaluate_one(result.workdir, "cond", num=10, batch_size=4,
                             classifier_workdir=clf.workdir)
  assert got["metrics"]["acc_requested"] == 0.5


def test_class_samples_with_selection(cond_run, monkeypatch):
  """Each class's samples are the best of k by D's scores: from dark and
  bright draws, with a D that prefers bright ones, only bright images are
  kept, which a brightness classifier calls dogs."""
  result, clf = cond_run
  _brightness_classifier(monkeypatch)

  calls = []

  def generate(self, rng, num, labels=None):
    """A third of the images bright, shifted by one on every call."""
    del self, rng, labels
    calls.append(num)
    bright = (np.arange(num) + len(calls)) % 3 == 0
    return jnp.where(bright[:, None, None, None], 0.9, 0.1) * jnp.ones(
        (num, 16, 16, 3))
  monkeypatch.setattr(run_lib.Run, "generate", generate)
  monkeypatch.setattr(run_lib.Run, "d_scores", lambda self, x, y=None: {
      "real": jnp.mean(x, axis=(1, 2, 3))})
  plain = classifier.evaluate_class_samples(clf.workdir, result.workdir,
                                            num=32, batch_size=8)
  assert 0.0 < plain["acc_requested_dog"] < 1.0
  chosen = classifier.evaluate_class_samples(
      clf.workdir, result.workdir, num=32, batch_size=8, select="real",
      candidates=8)
  # A slot's 8 draws come from 8 calls, each shifting the pattern: one
  # at least is bright.
  assert chosen["acc_requested_dog"] == 1.0
  assert chosen["acc_requested_cat"] == 0.0
  monkeypatch.setattr(classifier.ckpt_lib, "stored_config",
                      lambda workdir: config_with("cgan", "tiny,labels"))
  with pytest.raises(ValueError, match="applies to class-conditional GANs"):
    classifier.evaluate_generated(clf.workdir, "cgan_dir", select="real")


def test_class_samples_refuse_mismatched_runs(cond_run, tmp_path):
  result, clf = cond_run
  plain = _config("tiny")
  plain.train.update(num_steps=1, eval_every=1, checkpoint_every=1,
                     sample_every=1)
  plain_run = train.train_and_evaluate(plain, str(tmp_path / "plain"))
  with pytest.raises(ValueError, match="not class-conditional"):
    classifier.evaluate_class_samples(clf.workdir, plain_run.workdir)
  swapped = _config(**{"data.classes": "dog,cat"})
  swapped.train.update(num_steps=1, eval_every=1, checkpoint_every=1,
                       sample_every=1)
  swapped_run = train.train_and_evaluate(swapped, str(tmp_path / "swapped"))
  with pytest.raises(ValueError, match="sorted order"):
    classifier.evaluate_class_samples(clf.workdir, swapped_run.workdir)
