"""AC-GAN's class head on the Siamese discriminator (siamese_gan.py:cond,ac)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen import configlib
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen import train
from jaxgen.models import siamese
from jaxgen.tasks import siamese_gan
from tests.conftest import config_with

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "siamese_gan.py")


def _config(variant="tiny,cond,ac", **updates):
  return config_with("siamese_gan", variant, **updates)


def _key(seed):
  return jax.random.key(seed, impl="rbg")


def test_class_head_is_a_linear_map_of_the_shared_features():
  disc = siamese.SiameseDiscriminator(width=4, max_width=8, sim_hidden=4,
                                      num_classes=3, class_head=True,
                                      norm="none")
  x = jax.random.normal(_key(0), (2, 16, 16, 3))
  v = disc.init(_key(1), x)
  head = v["params"]["cls_head"]
  assert head["kernel"].shape == (4 * 4 * 8, 3)
  feats, _ = disc.apply(v, x, jnp.zeros((2,), jnp.int32), train=False)
  got = disc.apply(v, feats,
                   method=siamese.SiameseDiscriminator.class_logits)
  np.testing.assert_allclose(got, feats @ head["kernel"] + head["bias"],
                             rtol=1e-4, atol=1e-5)
  plain = siamese.SiameseDiscriminator(width=4, max_width=8, sim_hidden=4,
                                       num_classes=3, norm="none")
  assert "cls_head" not in plain.init(_key(1), x)["params"]
  with pytest.raises(ValueError, match="no class head"):
    plain.apply(v, feats, method=siamese.SiameseDiscriminator.class_logits)
  with pytest.raises(ValueError, match="needs num_classes"):
    siamese.SiameseDiscriminator(width=4, max_width=8, class_head=True).init(
        _key(1), x)


def _ce(task, state, feats, labels):
  logits = task.disc.apply(state.d.variables(), feats,
                           method=siamese.SiameseDiscriminator.class_logits)
  return float(jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, labels)))


def test_d_adds_the_weighted_class_loss_of_real_images():
  task = siamese_gan.SiameseGANTask(_config(**{
      "model.d_norm": "none", "siamese.d_class_weight": 2.5}))
  state = task.init_state(_key(0))
  real = jax.random.uniform(_key(1), (4, 16, 16, 3)) * 2 - 1
  real_labels = jnp.array([0, 1, 1, 0])
  fake_labels = jnp.array([1, 1, 0, 0])
  loss, (m, _) = task.d_loss(state.d.params, state.d, real, -real, None,
                             (real_labels, fake_labels))
  feats, _ = task.disc.apply(state.d.variables(), real, real_labels,
                             train=False)
  want = _ce(task, state, feats, real_labels)
  assert float(m["d_cls"]) == pytest.approx(want, rel=1e-4)
  # Fitted to the real images only: the fakes' labels play no part.
  assert want != pytest.approx(_ce(task, state, feats, fake_labels), rel=1e-3)
  s = task.config.siamese
  assert float(loss) == pytest.approx(
      float(m["d_adv"]) + s.d_sim_weight * float(m["d_sim"]) + 2.5 * want,
      rel=1e-5)


def test_g_is_scored_by_the_class_it_was_asked_for(monkeypatch):
  """G's class term is the head's cross-entropy on its images against the
  classes in their codes, times g_class_weight."""
  task = siamese_gan.SiameseGANTask(_config(**{
      "model.d_norm": "none", "siamese.g_class_weight": 3.0}))
  state = task.init_state(_key(0))
  real = jnp.zeros((8, 16, 16, 3))
  codes = []
  sample_z = task.sample_z
  monkeypatch.setattr(task, "sample_z",
                      lambda *a, **k: codes.append(sample_z(*a, **k))
                      or codes[-1])
  loss, (m, _) = task.g_loss(state.g.params, state, real, _key(2),
                             jnp.ones((8,), jnp.int32))
  asked = task.code_labels(codes[0])
  assert len(set(np.asarray(asked).tolist())) == 2
  fake, _ = task.generator_forward(state.g, codes[0])
  feats, _ = task.disc.apply(state.d.variables(), fake, asked, train=False)
  want = _ce(task, state, feats, asked)
  assert float(m["g_cls"]) == pytest.approx(want, rel=1e-4)
  assert want != pytest.approx(_ce(task, state, feats, 1 - asked), rel=1e-3)
  s = task.config.siamese
  assert float(loss) == pytest.approx(
      float(m["g_adv"]) + s.g_sim_weight * float(m["g_sim"]) + 3.0 * want,
      rel=1e-5)


@pytest.mark.parametrize("variant,updates,match", [
    ("tiny,cond", {"siamese.g_class_weight": -1.0}, ">= 0"),
    ("tiny", {"siamese.d_class_weight": 1.0},
     "siamese.d_class_weight=1.0 trains a class head"),
])
def test_bad_class_head_configs_are_refused(variant, updates, match):
  with pytest.raises(ValueError, match=match):
    siamese_gan.SiameseGANTask(_config(variant, **updates))


def test_ac_variant_needs_cond():
  with pytest.raises(ValueError, match="needs cond"):
    configlib.load_config_file(CONFIG + ":tiny,ac")
  c = _config()
  assert (c.siamese.d_class_weight, c.siamese.g_class_weight) == (1.0, 1.0)
  assert _config("tiny,cond").siamese.d_class_weight == 0.0


def test_tiny_run_with_the_class_head_trains_and_samples(tmp_path):
  config = _config()
  config.train.update(num_steps=2, eval_every=2, checkpoint_every=2,
                      sample_every=2, log_every=1)
  result = train.train_and_evaluate(config, str(tmp_path / "ac"))
  logged = result.train_metrics
  for name in ("train/d_cls", "train/d_cls_acc", "train/g_cls",
               "train/g_cls_acc"):
    assert np.isfinite(logged[name]), name
  r = run_lib.load(result.workdir, "latest")
  assert "cls_head" in r.state.d.params
  cats = sample.draw(r, 2, seed=0, label=0)
  dogs = sample.draw(r, 2, seed=0, label=1)
  assert np.abs(cats - dogs).max() > 1e-4
