"""Plumbing shared by the GAN families (gan, siamese_gan, cgan, cyclegan).

  GANState             generator and discriminator TrainStates + step.
  alternate            runs an update with or without applying it, by step
                       (the d_steps / g_steps alternation).
  apply_updates        TrainState update that passes the loss to the
                       optimizer (for "plateau" schedules) and new BN stats.
  updates_per_network  how many updates each network makes in a run.
  lr_metric            the learning rate a network's optimizer applies now.

The adversarial losses themselves live in jaxgen/losses.py, the stability
regularisers (DiffAugment, GP, R1, feature matching) in
jaxgen/tasks/regularizers.py.
"""

from typing import Any, Callable, Tuple

import flax
import jax
import ml_collections
import optax

from jaxgen import optim
from jaxgen.tasks import base


@flax.struct.dataclass
class GANState:
  """Generator and discriminator train states and the shared step."""
  step: jax.Array
  g: base.TrainState
  d: base.TrainState


def check_alternation(gan_cfg: ml_collections.ConfigDict):
  """Raises unless at most one of gan.d_steps and gan.g_steps exceeds 1."""
  if gan_cfg.d_steps < 1 or gan_cfg.g_steps < 1:
    raise ValueError("gan.d_steps and gan.g_steps must be >= 1, got "
                     f"{gan_cfg.d_steps} and {gan_cfg.g_steps}.")
  if gan_cfg.d_steps > 1 and gan_cfg.g_steps > 1:
    raise ValueError("Set at most one of gan.d_steps and gan.g_steps > 1.")


def updates_per_network(gan_cfg: ml_collections.ConfigDict,
                        total_steps: int) -> Tuple[int, int]:
  """(generator updates, discriminator updates) in `total_steps` calls.

  With `gan.d_steps` = k the generator is updated on every k-th call; with
  `gan.g_steps` = k the discriminator is. Schedules count their own
  network's updates.

  Args:
    gan_cfg: `config.gan` with d_steps and g_steps.
    total_steps: train_step calls of the run.

  Returns:
    (g_updates, d_updates).
  """
  return (total_steps // max(1, gan_cfg.d_steps),
          total_steps // max(1, gan_cfg.g_steps))


def alternate(update: Callable[[Any, bool], Tuple[Any, Any]], every: int,
              phase: int, state) -> Tuple[Any, Any]:
  """Runs `update(state, apply)` with apply = (state.step % every == phase).

  Both branches compute the same metrics, so the metrics of a network that
  is not updated in a call are still reported.

  Args:
    update: (state, apply: bool) -> (state, metrics).
    every: apply on one call in `every` (1: always, no cond).
    phase: which call of each `every` applies.
    state: a state with an integer `step`.

  Returns:
    (state, metrics) of the branch taken.
  """
  if every <= 1:
    return update(state, True)
  return jax.lax.cond(state.step % every == phase,
                      lambda s: update(s, True),
                      lambda s: update(s, False), state)


def apply_updates(ts: base.TrainState, grads, value=None,
                  batch_stats=None) -> base.TrainState:
  """`TrainState.apply_gradients` that passes `value` to the optimizer.

  Args:
    ts: a TrainState whose optimizer comes from jaxgen.optim.make_optimizer.
    grads: gradients shaped like `ts.params`.
    value: the loss ("plateau" schedules read it; others ignore it).
    batch_stats: new BatchNorm statistics (None keeps the current ones).

  Returns:
    The updated TrainState (step + 1).
  """
  updates, opt_state = ts.tx.update(grads, ts.opt_state, ts.params,
                                    value=value)
  return ts.replace(
      step=ts.step + 1, params=optax.apply_updates(ts.params, updates),
      opt_state=opt_state,
      batch_stats=ts.batch_stats if batch_stats is None else batch_stats)


def lr_metric(optim_cfg: ml_collections.ConfigDict, total_updates: int,
              ts: base.TrainState):
  """The learning rate `ts`'s optimizer applies at its next update."""
  return optim.current_lr(optim_cfg, total_updates, ts.opt_state, ts.step)
