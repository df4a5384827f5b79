"""Every GAN family's training step with all its options on at once.

One step is compiled per family (the compile, not the run, is what costs)
with, in `config.gan`: DiffAugment (all ops), the gradient penalty, lazy R1
(every 2nd D update), feature matching, spectral normalisation of D and the
EMA generator; cgan and cyclegan add a 2-scale PatchGAN and the perceptual
term (random feature weights), cgan trains on labels with projection
injection, and siamese_gan is class-conditional with AC-GAN's class head
(the penalties and feature matching with a D that needs labels). `_train`
runs `NUM_STEPS` steps of the loop's jitted, donating step once per test
process; the tests below check the options on its states and metrics. Loss
decompositions are checked against the other terms of the same step's
metrics, so no option needs a second compile.

The options' pieces (known values, errors) are tested in test_stability.py,
test_d_architecture.py, test_perceptual.py and test_ema.py.
"""

from typing import Any, List, NamedTuple
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import checkpoint
from jaxgen import parallel
from jaxgen import perceptual
from jaxgen import train
from jaxgen.tasks import base
from jaxgen.tasks import cgan
from jaxgen.tasks import cyclegan
from jaxgen.tasks import gan
from jaxgen.tasks import regularizers
from jaxgen.tasks import siamese_gan
from tests.conftest import tiny_config
from tests.test_d_architecture import _sn_vectors
from tests.test_perceptual import SMALL

FAMILIES = ("gan", "siamese_gan", "cgan", "cyclegan")
TASKS = {"gan": gan.GANTask, "siamese_gan": siamese_gan.SiameseGANTask,
         "cgan": cgan.CGANTask, "cyclegan": cyclegan.CycleGANTask}
# Image-to-image families: multi-scale D and the perceptual term.
TRANSLATORS = ("cgan", "cyclegan")
NUM_STEPS = 3  # R1 on D updates 0 and 2, not on 1.
R1_EVERY = 2
DECAY = 0.9
PERC_WEIGHT = 0.5
FM_WEIGHT = 1.0


def _params(families):
  """Families as parameters; one xdist worker trains and checks each."""
  return [pytest.param(f, marks=pytest.mark.xdist_group(f"options_{f}"))
          for f in families]


def _config(family, perceptual_weight=PERC_WEIGHT):
  """The family's tiny config with every option on."""
  variant = {"cgan": ("labels",), "siamese_gan": ("cond", "ac")}
  config = tiny_config(family, *variant.get(family, ()))
  config.gan.update(diffaug="color,translation,cutout", gp_weight=10.0,
                    r1_weight=1.0, r1_every=R1_EVERY,
                    feature_matching=FM_WEIGHT, d_spectral_norm=True,
                    ema_decay=DECAY)
  if family in TRANSLATORS:
    config.gan.update(d_scales=2, perceptual_weight=perceptual_weight,
                      perceptual_layers=SMALL)  # Fit 16 px.
  if family == "cgan":
    config.model.label_injection = "projection"
  if family == "siamese_gan":
    # Samples with the EMA's stored statistics, so that the EMA test below
    # reads them by hand (recalibration: test_siamese_gan.py).
    config.gan.bn_recalibrate = 0
  return config


def _task(family, config):
  """The family's task; the translators' perceptual features are random."""
  if family not in TRANSLATORS:
    return TASKS[family](config)
  return TASKS[family](config, perceptual.init_params(jax.random.key(0),
                                                      perceptual.LAYERS))


def _batch(task, seed=0):
  """Uniform images ([0, 1] for the unconditional families, else [-1, 1])
  and random labels of two classes (the Siamese GAN's: CIFAR cat and dog
  ids)."""
  rng = np.random.default_rng(seed)
  ids = [3, 5] if isinstance(task, siamese_gan.SiameseGANTask) else [0, 1]
  batch = {}
  for k, v in task.example_batch(4).items():
    if v.dtype == jnp.int32:
      batch[k] = jnp.asarray(rng.choice(ids, v.shape), jnp.int32)
    else:
      batch[k] = jnp.asarray(rng.uniform(-1, 1, v.shape), jnp.float32)
  if "image" in batch:
    batch["image"] = (batch["image"] + 1) / 2
  return batch


class Run(NamedTuple):
  task: Any
  config: Any
  batch: dict
  hosts: List[Any]  # Host copies of the state: initial, after each step.
  metrics: List[dict]  # Each step's metrics, as floats.
  state: Any  # The final state, on the device.
  # The modules given to regularizers.for_penalties while tracing the step.
  penalty_discs: List[Any]


def _train(family):
  """`NUM_STEPS` steps of the loop's jitted, donating step (one compile)."""
  config = _config(family)
  task = _task(family, config)
  mesh = parallel.make_mesh()
  # init_state not jitted: the EMA copy must not share buffers with the
  # generator, which the step donates (placing keeps shared buffers shared).
  state = jax.device_put(task.init_state(jax.random.key(0)),
                         parallel.replicated(mesh))
  batch = _batch(task)
  step = train.jit_train_step(task, mesh)
  hosts, metrics, penalty_discs = [jax.device_get(state)], [], []
  choose = regularizers.for_penalties

  def spy(module):
    penalty_discs.append(module)
    return choose(module)

  for i in range(NUM_STEPS):
    # The first call traces the step.
    with mock.patch.object(regularizers, "for_penalties", spy):
      state, m = step(state, batch, jax.random.key(10 + i))
    hosts.append(jax.device_get(state))
    metrics.append({k: float(v) for k, v in jax.device_get(m).items()})
  return Run(task, config, batch, hosts, metrics, state, penalty_discs)


@pytest.fixture(scope="session")
def trained():
  """`family -> Run`, trained once per test process."""
  runs = {}

  def get(family):
    if family not in runs:
      runs[family] = _train(family)
    return runs[family]

  return get


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


# The stability options (gan.diffaug, gp_weight, r1_weight, feature_matching).


@pytest.mark.parametrize("family", _params(FAMILIES))
def test_metrics_are_finite_and_the_penalties_lazy(family, trained):
  """Every metric of every step is finite; the GP and feature matching are
  positive on every step, R1 on D updates 0 and 2 only (0 on update 1), for
  each discriminator (cyclegan: both, and both generators' FM)."""
  run = trained(family)
  d_suffixes = ["_a", "_b"] if family == "cyclegan" else [""]
  fm_suffixes = ["_ab", "_ba"] if family == "cyclegan" else [""]
  for i, m in enumerate(run.metrics):
    for k, v in m.items():
      assert np.isfinite(v), (i, k, v)
    for s in d_suffixes:
      assert m["d_gp" + s] > 0, (i, s)
      assert (m["d_r1" + s] > 0) == (i % R1_EVERY == 0), (i, s, m["d_r1" + s])
    for s in fm_suffixes:
      assert m["g_fm" + s] > 0, (i, s)
  # D is updated on every call: its update count is the step count.
  assert int(run.hosts[-1].d.step) == NUM_STEPS
  # The penalties' D calls take the second-order lowering
  # (test_stability.py::test_penalties_use_the_second_order_lowering).
  assert run.penalty_discs
  assert all(d is run.task.disc for d in run.penalty_discs)


# Spectral norm, multi-scale D, projection (gan.d_spectral_norm, d_scales,
# model.label_injection).


@pytest.mark.parametrize("family", _params(FAMILIES))
def test_architecture_options_are_in_the_state(family, trained):
  """The spectral-norm vectors are in `state.d.batch_stats`; cgan has two D
  scales with a projection head and class FiLM in G, cyclegan two scales
  per discriminator."""
  state = trained(family).hosts[0]
  assert _sn_vectors(state.d.batch_stats)
  if family == "cgan":
    assert set(state.d.params) == {"scale0", "scale1"}
    assert "projection" in state.d.params["scale1"]
    assert "film1" in state.g.params
  elif family == "cyclegan":
    for name in ("a", "b"):
      assert set(state.d.params[name]) == {"scale0", "scale1"}


@pytest.mark.parametrize("family", _params(FAMILIES))
def test_power_iteration_moves_and_survives_a_checkpoint(family, trained,
                                                         tmp_path):
  """The power-iteration vectors change over the steps (a one-output
  layer's u is +-1 throughout) and the final state, vectors and EMA
  included, is restored from a checkpoint unchanged."""
  run = trained(family)
  u0 = _sn_vectors(run.hosts[0].d.batch_stats)
  u = _sn_vectors(run.hosts[-1].d.batch_stats)
  assert u.keys() == u0.keys()
  assert all(np.abs(u[k] - u0[k]).max() > 0 for k in u0 if u0[k].size > 1)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(NUM_STEPS, run.state, {}, run.config)
  ckpt.wait()
  restored, _, _ = ckpt.restore(
      jax.eval_shape(run.task.init_state, jax.random.key(0)))
  ckpt.close()
  assert _sn_vectors(restored.d.batch_stats).keys() == u.keys()
  want, got = _leaves(run.hosts[-1]), _leaves(restored)
  assert len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


# The perceptual term (gan.perceptual_weight).


@pytest.mark.parametrize("family", _params(TRANSLATORS))
def test_perceptual_term_is_weighted_into_the_generator_loss(family, trained):
  """On every step g_perc (cyclegan: both reconstructions') is finite and
  positive and g_loss = the other terms of the step + weight * g_perc; the
  frozen feature weights are not part of the state."""
  run = trained(family)
  for m in run.metrics:
    if family == "cgan":
      perc = m["g_perc"]
      rest = (m["g_gan"] + run.config.gan.l1_weight * m["g_l1"]
              + FM_WEIGHT * m["g_fm"])
    else:
      perc = m["g_perc_a"] + m["g_perc_b"]
      rest = (sum(m[k] for k in ("g_ab", "g_ba", "cycle_a", "cycle_b",
                                 "idt_a", "idt_b"))
              + FM_WEIGHT * (m["g_fm_ab"] + m["g_fm_ba"]))
    assert perc > 0
    np.testing.assert_allclose(m["g_loss"], rest + PERC_WEIGHT * perc,
                               rtol=1e-5)
  off = TASKS[family](_config(family, perceptual_weight=0.0))
  assert off.perceptual is None
  shapes = lambda tree: [np.shape(x) for x in jax.tree_util.tree_leaves(tree)]
  assert shapes(run.hosts[-1]) == shapes(
      jax.eval_shape(off.init_state, jax.random.key(0)))
  assert int(run.hosts[-1].g.step) == NUM_STEPS


# The EMA generator (gan.ema_decay).


@pytest.mark.parametrize("family", _params(FAMILIES))
def test_ema_follows_the_recursion(family, trained):
  """The EMA starts as the generator's variables and after every step
  ema_k = d ema_{k-1} + (1 - d) live_k (params and batch statistics)."""
  hosts = trained(family).hosts
  live = lambda s: {"params": s.g.params, "batch_stats": s.g.batch_stats}
  for got, want in zip(_leaves(hosts[0].ema), _leaves(live(hosts[0]))):
    np.testing.assert_array_equal(got, want)
  for prev, cur in zip(hosts, hosts[1:]):
    want = jax.tree_util.tree_map(lambda e, p: DECAY * e + (1 - DECAY) * p,
                                  prev.ema, live(cur))
    assert (jax.tree_util.tree_structure(cur.ema)
            == jax.tree_util.tree_structure(want))
    for got, w in zip(_leaves(cur.ema), _leaves(want)):
      np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def _sample(task, state, batch):
  """What the family shows and evaluates: generate() or translate()."""
  if base.generates(task):
    return task.generate(state, jax.random.key(5), 3)
  if task.config.task == "cgan":
    return task.translate(state, batch["sketch"], batch["label"],
                          jax.random.key(5))
  return task.translate(state, batch["b"], "BtoA")


def _by_hand(task, variables, batch):
  """`_sample` computed with the modules and the given generator variables
  ({"params", "batch_stats"})."""
  if base.generates(task):
    z = task.sample_z(jax.random.key(5), 3)
    return base.to_unit(task.gen.apply(variables, z, train=False))
  if task.config.task == "cgan":
    return task.gen.apply(variables, batch["sketch"], batch["label"], None,
                          train=False)
  return task.g_ba.apply({"params": variables["params"]["ba"]}, batch["b"],
                         train=True)


@pytest.mark.parametrize("family", _params(FAMILIES))
def test_generate_and_translate_use_the_ema(family, trained):
  """generate/translate of the trained state equal the modules applied to
  the EMA variables and differ from the live generator's output."""
  run = trained(family)
  state = run.hosts[-1]
  got = np.asarray(jax.jit(_sample, static_argnums=0)(run.task, state,
                                                     run.batch))
  by_hand = jax.jit(_by_hand, static_argnums=0)
  np.testing.assert_allclose(got, by_hand(run.task, state.ema, run.batch),
                             rtol=1e-5, atol=1e-6)
  raw = np.asarray(by_hand(run.task, {"params": state.g.params,
                                      "batch_stats": state.g.batch_stats},
                           run.batch))
  assert np.max(np.abs(got - raw)) > 1e-4
