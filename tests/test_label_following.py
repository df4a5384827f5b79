"""Label swap and the auxiliary classifier of the label cGAN
(jaxgen/tasks/label_following.py)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import configlib
from jaxgen import losses
from jaxgen import train
from jaxgen.tasks import cgan
from jaxgen.tasks import label_following

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(swap=0.0, weight=0.0, variant="labels,tiny"):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"cgan.py:{variant}"))
  config.gan.update(label_swap=swap, aux_classifier=weight)
  return config


def test_requested_labels_known_values():
  labels = jnp.array([0, 1, 1, 0, 1], jnp.int32)
  asked, kept = label_following.requested_labels(
      jax.random.key(0), labels, 2, 0.0)
  np.testing.assert_array_equal(asked, labels)
  np.testing.assert_array_equal(kept, np.ones(5))
  asked, kept = label_following.requested_labels(
      jax.random.key(0), labels, 2, 1.0 - 1e-7)
  np.testing.assert_array_equal(asked, 1 - labels)  # The other class.
  np.testing.assert_array_equal(kept, np.zeros(5))


def test_swapped_labels_are_other_classes_uniformly():
  n, k = 6000, 3
  labels = jnp.arange(n, dtype=jnp.int32) % k
  asked, kept = label_following.requested_labels(
      jax.random.key(1), labels, k, 0.5)
  asked, kept, labels = map(np.asarray, (asked, kept, labels))
  assert asked.dtype == labels.dtype
  np.testing.assert_array_equal(kept == 1, asked == labels)
  assert abs(1 - kept.mean() - 0.5) < 0.03
  swapped = kept == 0
  # From each class, the two others equally often.
  for c in range(k):
    moved = asked[swapped & (labels == c)]
    counts = np.bincount(moved, minlength=k)
    assert counts[c] == 0
    others = counts[np.arange(k) != c]
    assert abs(others[0] - others[1]) < 0.15 * others.sum(), counts


def test_l1_mask_averages_over_kept_examples_only():
  fake = jnp.zeros((2, 4, 4, 3))
  target = jnp.stack([jnp.full((4, 4, 3), 1.0), jnp.full((4, 4, 3), 3.0)])
  logits = jnp.zeros((2, 2, 2, 1))
  _, adv, l1 = losses.adversarial_l1_loss(logits, fake, target, "bce", 100.0)
  assert float(l1) == pytest.approx(2.0)
  total, adv, l1 = losses.adversarial_l1_loss(
      logits, fake, target, "bce", 100.0, l1_mask=jnp.array([1.0, 0.0]))
  assert float(l1) == pytest.approx(1.0)
  assert float(total) == pytest.approx(float(adv) + 100.0)
  _, _, l1 = losses.adversarial_l1_loss(
      logits, fake, target, "bce", 100.0, l1_mask=jnp.zeros(2))
  assert float(l1) == 0.0


@pytest.mark.parametrize("swap,weight,variant,message", [
    (1.0, 0.0, "labels,tiny", "label_swap must be in"),
    (-0.1, 0.0, "labels,tiny", "label_swap must be in"),
    (0.0, -1.0, "labels,tiny", "aux_classifier must be >= 0"),
    (0.5, 0.0, "tiny", "at least 2 classes"),
    (0.0, 1.0, "tiny", "at least 2 classes"),
])
def test_bad_options_are_clear_errors(swap, weight, variant, message):
  with pytest.raises(ValueError, match=message):
    cgan.CGANTask(_config(swap, weight, variant))


def test_classifier_metrics_sit_beside_feature_matching():
  """The classifier term also goes with feature matching (no swap); the
  step reports both."""
  config = _config(0.0, 1.0)
  config.gan.feature_matching = 10.0
  task = cgan.CGANTask(config)
  state = task.init_state(jax.random.key(0))
  batch = task.example_batch(4)
  _, m = jax.jit(task.train_step)(state, batch, jax.random.key(1))
  assert {"g_fm", "g_cls", "g_cls_acc", "d_cls"} <= set(m)
  assert m["g_fm"] > 0 and m["g_cls"] > 0
  # G's loss is the sum of its terms, each with its weight.
  np.testing.assert_allclose(
      m["g_loss"], m["g_gan"] + config.gan.l1_weight * m["g_l1"]
      + 10.0 * m["g_fm"] + 1.0 * m["g_cls"], rtol=1e-5)


def test_classifier_sees_diffaugment():
  """With gan.diffaug on, the classifier learns from augmented photos and
  judges augmented outputs: its losses change, same state, batch and key."""
  metrics = []
  for policy in ("", "color"):
    config = _config(0.0, 1.0)
    config.gan.diffaug = policy
    task = cgan.CGANTask(config)
    state = task.init_state(jax.random.key(0))
    _, m = jax.jit(task.train_step)(state, task.example_batch(4),
                                    jax.random.key(1))
    metrics.append(m)
  for key in ("d_cls", "g_cls"):
    assert np.isfinite(metrics[1][key]), key
    assert abs(float(metrics[0][key]) - float(metrics[1][key])) > 1e-4, key


def test_swap_does_not_go_with_paired_terms():
  config = _config(0.5, 1.0)
  config.gan.feature_matching = 10.0
  with pytest.raises(ValueError, match="feature_matching"):
    cgan.CGANTask(config)


def test_all_swapped_run_has_no_l1_and_resumes_the_classifier(tmp_path):
  """Every example swapped: no L1, G's loss is adversarial + w * g_cls; the
  classifier trains with D and its state is checkpointed and resumed."""
  config = _config(1.0 - 1e-7, 2.0)
  config.train.num_steps = 3
  first = train.train_and_evaluate(config, str(tmp_path))
  assert int(first.state.aux.step) == 3 and int(first.state.d.step) == 3
  config.train.num_steps = 6
  resumed = train.train_and_evaluate(config, str(tmp_path))
  assert resumed.step == 6
  assert int(resumed.state.aux.step) == 6  # Restored at 3, then 3 more.
  m = resumed.train_metrics
  assert m["train/g_l1"] == 0.0
  assert m["train/g_loss"] == pytest.approx(
      m["train/g_gan"] + 2.0 * m["train/g_cls"], rel=1e-5)
  for key in ("d_cls", "d_cls_acc", "g_cls_acc"):
    assert np.isfinite(m[f"train/{key}"]), key
  assert all(np.isfinite(v) for v in resumed.eval_metrics.values())
  start = cgan.CGANTask(config).init_state(jax.random.key(config.seed))
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()),
                                 resumed.state.aux.params, start.aux.params)
  assert max(jax.tree_util.tree_leaves(moved)) > 0
  # Without the options the state has no classifier.
  assert cgan.CGANTask(_config()).init_state(jax.random.key(0)).aux is None


@pytest.mark.xdist_group("tiny_classifier")
def test_classifier_starts_from_a_trained_run(tiny_run, tmp_path):
  """gan.aux_classifier_init: a fresh start puts the classifier run's
  variables into the auxiliary classifier; a run of other widths, or the
  path without a weight, is one clear error; the trained cGAN loads without
  the classifier run (its checkpoint holds the classifier)."""
  from jaxgen import run  # pylint: disable=g-import-not-at-top
  clf = tiny_run("classifier").result
  config = _config(0.5, 1.0)
  config.gan.aux_classifier_init = str(tmp_path / "classifier")
  os.symlink(clf.workdir, config.gan.aux_classifier_init)
  task = cgan.CGANTask(config)  # Builds without reading the run.
  aux = task.load_pretrained(task.init_state(jax.random.key(0))).aux
  for got, want in zip(jax.tree_util.tree_leaves(aux.variables()),
                       jax.tree_util.tree_leaves(clf.state.variables())):
    np.testing.assert_array_equal(got, want)
  assert int(aux.step) == 0
  result = train.train_and_evaluate(config, str(tmp_path / "cgan"))
  os.remove(config.gan.aux_classifier_init)
  loaded = run.load(result.workdir)
  assert int(loaded.state.step) == config.train.num_steps
  # A fresh start does read it: without the run, training cannot start.
  with pytest.raises(run.RunError, match="classifier"):
    train.train_and_evaluate(config, str(tmp_path / "cgan_again"))
  wrong = _config(0.5, 1.0)
  wrong.gan.aux_classifier_init = clf.workdir
  wrong.model.d_width = 8
  task = cgan.CGANTask(wrong)
  with pytest.raises(ValueError, match=r"model.width 4 \(needs 8\)"):
    task.load_pretrained(task.init_state(jax.random.key(0)))
  no_weight = _config(0.5, 0.0)
  no_weight.gan.aux_classifier_init = clf.workdir
  with pytest.raises(ValueError, match="aux_classifier is 0"):
    cgan.CGANTask(no_weight)
