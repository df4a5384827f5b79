"""Best-of-k sampling by the run's discriminator (jaxgen.sample `select`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import cli
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen import tasks as tasks_lib
from jaxgen.models import siamese
from tests.conftest import config_with


def _run(name, variant, **updates):
  """An untrained run of configs/<name>.py:<variant> (no workdir needed)."""
  config = config_with(name, variant, **updates)
  task = tasks_lib.get_task(config)
  state = task.init_state(jax.random.key(0, impl="rbg"))
  return run_lib.Run(f"{name}_dir", config, task, state, 0, "latest", {})


def _images(r, n, seed=1):
  """n random images of run r's shape, in [0, 1]."""
  shape = r.task.example_batch(1)["image"].shape[1:]
  return jax.random.uniform(jax.random.key(seed), (n,) + shape)


def test_d_scores_are_ds_logit_and_class_log_probability():
  r = _run("siamese_gan", "tiny,cond,ac", **{"model.d_norm": "none"})
  x = _images(r, 4)
  cats, dogs = np.zeros(4, np.int32), np.ones(4, np.int32)
  s_cat, s_dog = r.d_scores(x, cats), r.d_scores(x, dogs)
  v = r.state.d.variables()
  feats, logits = r.task.disc.apply(v, x * 2 - 1, cats, train=False)
  np.testing.assert_allclose(s_cat["real"], logits.reshape(4), rtol=1e-5)
  # The projection D judges the same images differently as dogs.
  assert np.abs(np.asarray(s_cat["real"] - s_dog["real"])).max() > 1e-4
  # "class" is log p(asked class) under the head on the encoder's features
  # (which the asked class does not change): the two add up to 1.
  head = r.task.disc.apply(v, feats,
                           method=siamese.SiameseDiscriminator.class_logits)
  np.testing.assert_allclose(s_dog["class"], jax.nn.log_softmax(head)[:, 1],
                             rtol=1e-5)
  np.testing.assert_allclose(np.exp(s_cat["class"]) + np.exp(s_dog["class"]),
                             1.0, rtol=1e-5)
  plain = _run("gan", "tiny")
  x = _images(plain, 4)
  got = plain.d_scores(x)
  assert set(got) == {"real"}
  want = plain.task.disc.apply(plain.state.d.variables(), x * 2 - 1,
                               train=False)
  np.testing.assert_allclose(got["real"], np.reshape(want, (4, -1)).mean(-1),
                             rtol=1e-5)


def _brightness_scores(seen):
  """d_scores that rate brighter images higher, recording the labels."""
  def scores(x, y=None):
    seen.append(None if y is None else np.asarray(y))
    m = jnp.mean(x, axis=(1, 2, 3))
    return {"real": m, "class": -m}
  return scores


@pytest.mark.parametrize("by,pick", [("real", np.argmax), ("class", np.argmin)])
def test_each_sample_is_the_best_of_its_candidates(by, pick):
  r = _run("siamese_gan", "tiny,cond,ac")
  seen = []
  r.d_scores = _brightness_scores(seen)
  got = sample.draw(r, 5, seed=3, batch_size=4, label=1, select=by,
                    candidates=3)
  # The same codes, drawn without selection: image i competes with the
  # draws i + 5 and i + 10.
  pool = sample.draw(r, 15, seed=3, batch_size=4, label=1).reshape(
      3, 5, 16, 16, 3)
  best = pick(pool.mean(axis=(2, 3, 4)), axis=0)
  np.testing.assert_array_equal(got, pool[best, np.arange(5)])
  assert len(set(best.tolist())) > 1  # Not trivially the first draws.
  # Every draw is judged as the class asked for (then 1 row of padding).
  np.testing.assert_array_equal(np.concatenate(seen)[:15], 1)


def test_classes_are_asked_for_in_turn_and_unconditional_runs_work():
  r = _run("siamese_gan", "tiny,cond,ac")
  seen = []
  r.d_scores = _brightness_scores(seen)
  got = sample.draw(r, 3, seed=0, batch_size=9, select="real", candidates=3)
  assert got.shape == (3, 16, 16, 3)
  # Slot i asks for class i % 2 in each of its three draws.
  np.testing.assert_array_equal(seen[0], [0, 1, 0] * 3)
  plain = _run("gan", "tiny")
  images = sample.draw(plain, 3, seed=0, select="real", candidates=2)
  pool = sample.draw(plain, 6, seed=0)
  scores = np.asarray(plain.d_scores(pool)["real"]).reshape(2, 3)
  np.testing.assert_allclose(images, pool.reshape((2, 3) + pool.shape[1:])[
      scores.argmax(0), np.arange(3)], atol=1e-6)


@pytest.mark.parametrize("name,variant,select,candidates,match", [
    ("siamese_gan", "tiny,cond", "class", 4, "needs a discriminator with a "
     "class head"),
    ("gan", "tiny", "class", 4, "class head"),
    ("vae", "tiny", "real", 4, "has none"),
    ("gan", "tiny", "real", 1, "at least 2 candidates"),
    ("gan", "tiny", "best", 4, "Unknown selection 'best'"),
])
def test_selection_that_does_not_apply_is_refused(name, variant, select,
                                                  candidates, match,
                                                  tmp_path):
  r = _run(name, variant)
  with pytest.raises(cli.UserError, match=match):
    sample.draw(r, 2, select=select, candidates=candidates)
  with pytest.raises(cli.UserError, match=match):
    sample.sample_run(r, str(tmp_path / "out"), num=2, select=select,
                      candidates=candidates)
  assert not (tmp_path / "out").exists()  # Refused before writing.


@pytest.mark.parametrize("name,variant,offered", [
    ("siamese_gan", "tiny,cond,ac", ["real", "class"]),
    ("siamese_gan", "tiny,cond", ["real"]),
    ("gan", "tiny", ["real"]),
    ("vae", "tiny", []),
])
def test_selections_lists_the_scores_a_run_can_be_picked_by(name, variant,
                                                           offered):
  assert sample.selections(_run(name, variant)) == offered
