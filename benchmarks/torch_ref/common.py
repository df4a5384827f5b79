"""Helpers the PyTorch references share: device, dtype, batch layout, Adam."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxgen import optim


def device() -> torch.device:
  """The GPU if torch sees one, else the CPU."""
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(name: str, dev: torch.device) -> torch.dtype:
  """base.resolve_dtype: "auto" is bfloat16 on accelerators, else float32."""
  if name == "auto":
    return torch.bfloat16 if dev.type != "cpu" else torch.float32
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"Unknown model.dtype {name!r}.")
  return getattr(torch, name)


def autocast(dev: torch.device, dtype: torch.dtype):
  """torch.autocast to `dtype` on `dev`; a no-op for float32."""
  return torch.autocast(dev.type, dtype=dtype,
                        enabled=dtype != torch.float32)


def to_nchw(images: np.ndarray, dev: torch.device) -> torch.Tensor:
  """NHWC numpy images -> a contiguous NCHW float32 tensor on `dev`."""
  x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
  return x.permute(0, 3, 1, 2).contiguous().to(dev)


class Adam:
  """torch Adam (AdamW with weight decay) as jaxgen.optim.make_optimizer.

  Same lr, betas, eps (1e-8), decoupled weight decay, global-norm gradient
  clipping and learning-rate schedule. The schedule is evaluated once, with
  jaxgen's own function, into a per-step table, so a step costs no JAX call.

  Args:
    params: the parameters to update.
    cfg: an optimizer config (configlib.adam).
    total_steps: length of training (for schedules).
  """

  def __init__(self, params, cfg, total_steps: int):
    self.params = list(params)
    wd = cfg.get("weight_decay", 0.0)
    cls = torch.optim.AdamW if wd else torch.optim.Adam
    self.opt = cls(self.params, lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=1e-8,
                   weight_decay=wd)
    self.clip = cfg.get("grad_clip", 0.0)
    self.lrs = None
    if cfg.get("schedule", "constant") != "constant":
      schedule = optim.make_schedule(cfg, total_steps)
      self.lrs = np.asarray(jax.vmap(schedule)(
          jnp.arange(max(1, total_steps) + 1)), np.float64)
    self.count = 0

  def zero_grad(self):
    self.opt.zero_grad(set_to_none=True)

  def step(self):
    """Clips, sets this step's learning rate and updates the parameters."""
    if self.clip:
      torch.nn.utils.clip_grad_norm_(self.params, self.clip)
    if self.lrs is not None:
      lr = float(self.lrs[min(self.count, len(self.lrs) - 1)])
      for group in self.opt.param_groups:
        group["lr"] = lr
    self.opt.step()
    self.count += 1
