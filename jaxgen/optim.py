"""Optimizers and learning-rate schedules built from config.

Every optimizer is an `optax.GradientTransformationExtraArgs`: its update
takes the loss as `value=` (used by the "plateau" schedule, ignored by the
others), so one update helper serves every task.
"""

import jax
import ml_collections
import optax

SCHEDULES = ("constant", "linear", "cosine", "warmup_cosine", "plateau",
             "epoch_linear")


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int):
  """Returns an optax schedule.

  Args:
    cfg: has `lr`, and optionally `schedule` (one of SCHEDULES),
      `decay_start` (fraction of training before a linear decay begins, as in
      pix2pix), `warmup_steps`, and for "epoch_linear" (CycleGAN's
      per-epoch policy, `epoch_decay_schedule`) `n_epochs` and
      `n_epochs_decay`, whose sum spans `total_steps`.
    total_steps: length of training in steps.

  Returns:
    A callable step -> learning rate.
  """
  name = cfg.get("schedule", "constant")
  lr = cfg.lr
  if name in ("constant", "plateau"):  # Plateau scaling is a separate stage.
    return optax.constant_schedule(lr)
  if name == "linear":
    start = int(total_steps * cfg.get("decay_start", 0.5))
    return optax.join_schedules([
        optax.constant_schedule(lr),
        optax.linear_schedule(lr, 0.0, max(1, total_steps - start)),
    ], [start])
  if name == "epoch_linear":
    epochs = cfg.n_epochs + cfg.n_epochs_decay
    return epoch_decay_schedule(lr, total_steps // max(1, epochs),
                                cfg.n_epochs, cfg.n_epochs_decay)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, max(1, total_steps))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, cfg.get("warmup_steps", 0) or 1, max(2, total_steps))
  raise ValueError(f"Unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}.")


def _adam(cfg: ml_collections.ConfigDict, total_steps: int):
  """Adam(W) with the schedule of `cfg` and optional gradient clipping."""
  lr = make_schedule(cfg, total_steps)
  wd = cfg.get("weight_decay", 0.0)
  if wd:
    opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=wd)
  else:
    opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
  clip = cfg.get("grad_clip", 0.0)
  if clip:
    opt = optax.chain(optax.clip_by_global_norm(clip), opt)
  return opt


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """Adam(W) with a schedule, optional clipping, and "plateau" support.

  Args:
    cfg: an Adam config (jaxgen.configlib.adam): `lr`, `b1`, `b2`, optional
      `weight_decay`, `grad_clip`, `schedule` (one of SCHEDULES). "plateau"
      scales the Adam updates with optax's reduce_on_plateau, fed the `value`
      passed to `update`, and reads plateau_factor, plateau_patience,
      plateau_cooldown, plateau_window (steps whose mean value is compared),
      plateau_min_scale and plateau_rtol.
    total_steps: updates this optimizer will make (for schedules).

  Returns:
    An optax.GradientTransformationExtraArgs whose update accepts `value=`.
  """
  if cfg.get("schedule", "constant") != "plateau":
    return optax.with_extra_args_support(_adam(cfg, total_steps))
  return optax.chain(
      _adam(cfg, total_steps),
      optax.contrib.reduce_on_plateau(
          factor=cfg.get("plateau_factor", 0.5),
          patience=cfg.get("plateau_patience", 5),
          cooldown=cfg.get("plateau_cooldown", 0),
          accumulation_size=cfg.get("plateau_window", 100),
          min_scale=cfg.get("plateau_min_scale", 0.01),
          rtol=cfg.get("plateau_rtol", 1e-4)))


def epoch_decay_schedule(lr: float, steps_per_epoch: int, n_epochs: int,
                         n_epochs_decay: int):
  """Constant `lr` for `n_epochs`, then linear decay to 0 (CycleGAN's).

  Like the reference implementation's "linear" policy, the rate is set once
  per epoch: during epoch e (counted from 0) it is
  lr * (1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)), so the last
  epoch runs at lr / (n_epochs_decay + 1), not 0.

  Args:
    lr: the initial learning rate.
    steps_per_epoch: optimizer updates per epoch of the data.
    n_epochs: epochs at the constant rate.
    n_epochs_decay: epochs of linear decay after them.

  Returns:
    A callable step -> learning rate.
  """
  steps_per_epoch = max(1, int(steps_per_epoch))

  def schedule(step):
    epoch = step // steps_per_epoch
    frac = jax.numpy.maximum(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)
    return lr * jax.numpy.clip(1.0 - frac, 0.0, 1.0)

  return schedule


def current_lr(cfg: ml_collections.ConfigDict, total_steps: int, opt_state,
               step):
  """The learning rate an optimizer of `cfg` applies at `step` (for logs).

  Args:
    cfg: the optimizer config given to `make_optimizer`.
    total_steps: the same total as given to `make_optimizer`.
    opt_state: the optimizer's state (its plateau scale is applied).
    step: the optimizer's update count.

  Returns:
    A scalar learning rate.
  """
  lr = make_schedule(cfg, total_steps)(step)
  plateau = optax.contrib.ReduceLROnPlateauState
  for s in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda x: isinstance(x, plateau)):
    if isinstance(s, plateau):
      lr = lr * s.scale
  return lr
