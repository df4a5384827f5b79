"""Load a trained run from its workdir: the one way every tool restores.

  from jaxgen import run
  r = run.load("runs/cgan")                      # best if kept, else latest
  photos = r.translate(sketches)                 # [n, h, w, c] in [-1, 1]
  faces = run.load("runs/gan").generate(jax.random.key(0), 16)  # in [0, 1]

The config stored with the checkpoint is the only input: the task builds
its modules from it, the target state is `jax.eval_shape(task.init_state)`
(no initialiser runs, no data folder is read), and orbax restores the
arrays into it. A workdir whose checkpoint does not fit the stored config's
model (another task's run, an edited architecture) is one `RunError` naming
what differs.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional

import jax
import ml_collections

from jaxgen import backend
from jaxgen import checkpoint as ckpt_lib
from jaxgen import tasks as tasks_lib

WHICH = ("best", "latest")


class RunError(ValueError):
  """A workdir that cannot be loaded, with a message a user can act on."""


def _steps_in(folder: str) -> List[int]:
  if not os.path.isdir(folder):
    return []
  return sorted(int(d) for d in os.listdir(folder) if d.isdigit())


@dataclasses.dataclass
class Run:
  """A restored run: its config, task and state, and pure functions on them.

  Attributes:
    workdir: the run's folder.
    config: the config it was trained with.
    task: the task built from that config.
    state: the restored state (on the default device).
    step: the checkpoint's step.
    which: "best" or "latest".
    metrics: metrics stored with the checkpoint.
  """
  workdir: str
  config: ml_collections.ConfigDict
  task: Any
  state: Any
  step: int
  which: str
  metrics: Dict[str, float]

  @property
  def directions(self) -> List[str]:
    """Translation directions the task offers ("" for one-way tasks)."""
    return list(self.task.translations())

  def generate(self, rng: jax.Array, num: int) -> jax.Array:
    """`num` new images in [0, 1] (generative tasks)."""
    return self._jit("generate", self.task.generate, static_argnums=2)(
        self.state, rng, num)

  def translate(self, images: jax.Array, direction: str = "",
                **kwargs) -> jax.Array:
    """Translates [n, h, w, c] images in [-1, 1] (translation tasks).

    Args:
      images: inputs at the model's resolution, in [-1, 1].
      direction: "AtoB" or "BtoA" for CycleGAN; "" for one-way tasks.
      **kwargs: task-specific inputs (e.g. `label` for a label-conditioned
        pix2pix).

    Returns:
      [n, h, w, c_out] float32 in [-1, 1].
    """
    if direction:
      return self._jit(f"translate_{direction}",
                       lambda s, x: self.task.translate(s, x, direction))(
                           self.state, images)
    return self._jit("translate", self.task.translate)(self.state, images,
                                                        **kwargs)

  def _jit(self, name, fn, **kwargs):
    cache = self.__dict__.setdefault("_jitted", {})
    if name not in cache:
      cache[name] = backend.jit(fn, **kwargs)
    return cache[name]


def checkpoint_steps(workdir: str) -> Dict[str, List[int]]:
  """{"best": [...], "latest": [...]} steps saved in a workdir."""
  workdir = os.path.abspath(workdir)
  return {"best": _steps_in(os.path.join(workdir, "best")),
          "latest": _steps_in(os.path.join(workdir, "checkpoints"))}


def load(workdir: str, which: Optional[str] = None,
         step: Optional[int] = None) -> Run:
  """Restores a run from its workdir and the config stored with it.

  Args:
    workdir: the run's workdir.
    which: "best" or "latest"; None picks best when the run kept one.
    step: a specific step of that kind (default: the newest).

  Returns:
    A Run.

  Raises:
    RunError: no such workdir, no checkpoint, or a checkpoint that does not
      fit the stored config.
  """
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise RunError(f"No workdir at {workdir}.")
  if which is not None and which not in WHICH:
    raise RunError(f"Unknown checkpoint kind {which!r}; valid: {WHICH}.")
  steps = checkpoint_steps(workdir)
  which = which or ("best" if steps["best"] else "latest")
  found = steps[which]
  if not found or (step is not None and step not in found):
    want = f"step {step} in the {which} checkpoints" if step else (
        f"a {which} checkpoint")
    raise RunError(
        f"No {want} in {workdir} (checkpoints: {steps['latest'] or 'none'}, "
        f"best: {steps['best'] or 'none'}). Train first with python -m "
        f"jaxgen.main --config=... --workdir={workdir}")
  config = ckpt_lib.stored_config(workdir, which)
  task = tasks_lib.get_task(config)
  target = abstract_state(task, config.seed)
  ckpt = ckpt_lib.Checkpointer(
      workdir, config.train.get("keep", 3),
      config.train.get("best_metric", "") if which == "best" else "",
      config.train.get("best_mode", "min"))
  try:
    state, _, meta = ckpt.restore(target, which, step)
  except (ValueError, KeyError, TypeError) as e:
    raise RunError(mismatch_message(workdir, config, e)) from e
  finally:
    ckpt.close()
  return Run(workdir, config, task, state, int(meta["step"]), which,
             dict(meta.get("metrics", {})))


def abstract_state(task, seed: int = 0):
  """The task's state as ShapeDtypeStructs on the default device.

  Args:
    task: a task built from a config.
    seed: any seed (only shapes and dtypes matter).

  Returns:
    A pytree of jax.ShapeDtypeStruct with single-device shardings, the
    restore target orbax needs.
  """
  shapes = jax.eval_shape(task.init_state, jax.random.key(seed))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      shapes)


def mismatch_message(workdir: str, config, error: Exception) -> str:
  """One paragraph saying that a checkpoint does not fit its config."""
  first = str(error).strip().splitlines()[0][:300] if str(error) else ""
  return (f"The checkpoint in {workdir} does not fit the model of its stored "
          f"config (task {config.get('task')!r}, model "
          f"{dict(config.get('model', {}))}): it was written by another task "
          "or a changed architecture. Use a new workdir for a new model. "
          f"(orbax: {first})")
