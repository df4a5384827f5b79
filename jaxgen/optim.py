"""Optimizers and learning-rate schedules built from config."""

import ml_collections
import optax

SCHEDULES = ("constant", "linear", "cosine", "warmup_cosine")


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int):
  """Returns an optax schedule.

  Args:
    cfg: has `lr`, and optionally `schedule` (one of SCHEDULES),
      `decay_start` (fraction of training before a linear decay begins, as in
      pix2pix/CycleGAN) and `warmup_steps`.
    total_steps: length of training in steps.

  Returns:
    A callable step -> learning rate.
  """
  name = cfg.get("schedule", "constant")
  lr = cfg.lr
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "linear":
    start = int(total_steps * cfg.get("decay_start", 0.5))
    return optax.join_schedules([
        optax.constant_schedule(lr),
        optax.linear_schedule(lr, 0.0, max(1, total_steps - start)),
    ], [start])
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, max(1, total_steps))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, cfg.get("warmup_steps", 0) or 1, max(2, total_steps))
  raise ValueError(f"Unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}.")


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """Adam(W) with an optional schedule and gradient clipping.

  Args:
    cfg: has `lr`, `b1`, `b2`, optional `weight_decay`, `grad_clip`,
      `schedule`.
    total_steps: length of training in steps (for schedules).

  Returns:
    An optax.GradientTransformation.
  """
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
