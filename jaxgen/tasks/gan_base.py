"""Plumbing shared by the GAN families (gan, siamese_gan, cgan, cyclegan).

  GANState             generator and discriminator TrainStates + step (and
                       the EMA generator when `gan.ema_decay` > 0).
  alternate            runs an update with or without applying it, by step
                       (the d_steps / g_steps alternation).
  apply_updates        TrainState update that passes the loss to the
                       optimizer (for "plateau" schedules) and new BN stats.
  updates_per_network  how many updates each network makes in a run.
  lr_metric            the learning rate a network's optimizer applies now.
  ema_decay, ema_init, with_ema, sampling_generator
                       the EMA generator (below).

EMA generator (`gan.ema_decay` = decay > 0; older siamese_gan configs set
`model.ema_decay`, which is read when `gan.ema_decay` is 0): after every
train step (every call, whichever network the alternation updated)

  ema <- decay * ema + (1 - decay) * (generator params, batch statistics)

and `sampling_generator(state)` (the generator with the EMA variables) is
what every family uses for samples, generate/translate, eval steps and FID,
hence also for the "best" checkpoint. The EMA copy lives in the state's
`ema` field, so it is checkpointed and restored with the run; with the
option off the field is None, which adds no leaf: states and checkpoints
are those of a run without the field.

The adversarial losses themselves live in jaxgen/losses.py, the stability
regularisers (DiffAugment, GP, R1, feature matching) in
jaxgen/tasks/regularizers.py.
"""

from typing import Any, Callable, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import backend
from jaxgen import optim
from jaxgen.tasks import base


@flax.struct.dataclass
class GANState:
  """Generator and discriminator train states, the shared step, the EMA
  generator variables ({"params", "batch_stats"}; None when EMA is off) and
  a family's auxiliary network (cgan's label classifier, see
  jaxgen/tasks/label_following.py; None when unused).

  `sampling_ready` (static) marks a state from a task's `eval_state` whose
  `g` is already the sampling generator (and `ema` None)."""
  step: jax.Array
  g: base.TrainState
  d: base.TrainState
  ema: Any = None
  aux: Any = None
  sampling_ready: bool = flax.struct.field(pytree_node=False, default=False)


def check_alternation(gan_cfg: ml_collections.ConfigDict):
  """Raises unless at most one of gan.d_steps and gan.g_steps exceeds 1."""
  if gan_cfg.d_steps < 1 or gan_cfg.g_steps < 1:
    raise ValueError("gan.d_steps and gan.g_steps must be >= 1, got "
                     f"{gan_cfg.d_steps} and {gan_cfg.g_steps}.")
  if gan_cfg.d_steps > 1 and gan_cfg.g_steps > 1:
    raise ValueError("Set at most one of gan.d_steps and gan.g_steps > 1.")


def check_separate_batches(gan_cfg: ml_collections.ConfigDict, family: str):
  """Raises if gan.d_joint_batch is set for a family that does not read it.

  Args:
    gan_cfg: `config.gan`.
    family: the task's name, for the message.
  """
  if gan_cfg.get("d_joint_batch", False):
    raise ValueError(
        f"gan.d_joint_batch is implemented for the gan and siamese_gan "
        f"families (one BatchNorm batch of real and generated images); "
        f"{family}'s discriminators judge each batch separately. Set "
        f"gan.d_joint_batch=False.")


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
  is not updated in a call are still reported. Where `backend.select_not_cond`
  (CPU), the update is computed on every call and its state kept only when
  `apply` holds: XLA:CPU runs an update inside a conditional several times
  slower than the update itself, so skipping it costs more than it saves.

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
  take = state.step % every == phase
  if backend.select_not_cond():
    updated, metrics = update(state, True)
    return jax.tree.map(lambda new, old: jnp.where(take, new, old), updated,
                        state), metrics
  return jax.lax.cond(take,
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


def ema_decay(config: ml_collections.ConfigDict) -> float:
  """The EMA decay of the generator: `gan.ema_decay`, else `model.ema_decay`.

  Args:
    config: an experiment config (older siamese_gan configs keep the decay
      in `model.ema_decay`).

  Returns:
    The decay in [0, 1); 0 means no EMA generator.

  Raises:
    ValueError: for a decay outside [0, 1).
  """
  gan = config.get("gan") or {}
  model = config.get("model") or {}
  decay = float(gan.get("ema_decay", 0.0) or model.get("ema_decay", 0.0))
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"gan.ema_decay must be in [0, 1) (0 = off), got "
                     f"{decay}.")
  return decay


def ema_init(g: base.TrainState, decay: float):
  """The initial EMA variables: copies of the generator's, or None.

  Copies rather than the same arrays: the train loop donates the state's
  buffers, and one buffer cannot be donated twice.

  Args:
    g: the generator's TrainState.
    decay: `ema_decay(config)`.

  Returns:
    {"params", "batch_stats"} (batch_stats None without BatchNorm), or
    None when `decay` is 0.
  """
  if decay <= 0:
    return None
  return jax.tree_util.tree_map(
      jnp.copy, {"params": g.params, "batch_stats": g.batch_stats})


def ema_update(ema, new, decay):
  """decay * ema + (1 - decay) * new, leaf by leaf.

  Args:
    ema: pytree of the running averages.
    new: pytree of the same structure with the current values.
    decay: scalar in [0, 1).

  Returns:
    The updated pytree.
  """
  return jax.tree_util.tree_map(
      lambda e, p: decay * e + (1.0 - decay) * p, ema, new)


def with_ema(state, decay: float):
  """`state` with its EMA generator moved towards the current generator.

  Args:
    state: a state with `g` (TrainState) and `ema` (None when off).
    decay: `ema_decay(config)`.

  Returns:
    The updated state (unchanged when `state.ema` is None).
  """
  if state.ema is None:
    return state
  return state.replace(ema=ema_update(
      state.ema, {"params": state.g.params,
                  "batch_stats": state.g.batch_stats}, decay))


def sampling_generator(state) -> base.TrainState:
  """The generator used for samples and evaluation (EMA when enabled).

  Args:
    state: a state with `g` and `ema`.

  Returns:
    `state.g`, with the EMA params and batch statistics when `state.ema` is
    set.
  """
  if state.ema is None:
    return state.g
  return state.g.replace(params=state.ema["params"],
                         batch_stats=state.ema["batch_stats"])
