"""Load a trained run from its workdir: the one way every tool restores.

  from jaxgen import run
  r = run.load("runs/cgan")                      # best if kept, else latest
  photos = r.translate(sketches)                 # [n, h, w, c] in [-1, 1]
  faces = run.load("runs/gan").generate(jax.random.key(0), 16)  # in [0, 1]
  mean, logvar = run.load("runs/vae").encode(images)  # and .decode(z)

The config stored with the checkpoint is the only input: the task builds
its modules from it, the target state is `jax.eval_shape(task.init_state)`
(no initialiser runs, no data folder is read), and orbax restores the
arrays into it. A workdir whose checkpoint does not fit the stored config's
model (another task's run, an edited architecture) is one `RunError` naming
what differs; `check_resumable` tells the train loop the same before it
resumes a workdir with a new config.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import ml_collections
import numpy as np

from jaxgen import backend
from jaxgen import checkpoint as ckpt_lib
from jaxgen import tasks as tasks_lib
from jaxgen.tasks import base as tasks_base
from jaxgen.tasks import gan as gan_lib

WHICH = ("best", "latest")


class RunError(ValueError):
  """A workdir that cannot be loaded, or a request its run cannot serve
  (a translation direction, a label), with a message a user can act on."""


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
    """Translation directions the task offers ("" for one-way tasks).

    The first is the default (CycleGAN: "BtoA", sketch -> photo).
    """
    return list(self.task.translations())

  @property
  def generates(self) -> bool:
    """Whether the task draws new images (`generate`)."""
    return tasks_base.generates(self.task)

  def direction(self, direction: Optional[str] = None) -> str:
    """`direction` checked against the task's, or the default one.

    Args:
      direction: "AtoB", "BtoA", or None/"" for the default.

    Returns:
      A key of `directions`.

    Raises:
      RunError: the task does not translate, or not in that direction.
    """
    found = self.directions
    if not found:
      raise RunError(f"The {self.config.task!r} run in {self.workdir} does "
                     "not translate images.")
    if not direction:
      return found[0]
    if direction not in found:
      offered = ("only one way (leave the direction out)" if found == [""]
                 else f"only {', '.join(found)}")
      raise RunError(f"The {self.config.task!r} run translates {offered}, "
                     f"not {direction!r}.")
    return direction

  def input_shape(self, direction: Optional[str] = None) -> Tuple[int, ...]:
    """(height, width, channels) of the model's inputs in `direction`."""
    return tuple(self.task.input_shape(self.direction(direction)))

  def generate(self, rng: jax.Array, num: int,
               labels: Optional[np.ndarray] = None) -> jax.Array:
    """`num` new images in [0, 1] (generative tasks).

    Args:
      rng: a PRNG key.
      num: how many images.
      labels: class-conditional GANs: [num] class indices to ask for (None:
        drawn uniformly); other runs take None.

    Returns:
      [num, h, w, c] images.
    """
    self._require("generate")
    generate = self._jit("generate", self.task.generate, static_argnums=2)
    if labels is None:  # Only class-conditional tasks take labels.
      return generate(self._eval_state(), rng, num)
    return generate(self._eval_state(), rng, num,
                    np.asarray(labels, np.int32))

  def encode(self, images: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Posterior (mean, logvar) of images in [0, 1] (the VAE)."""
    self._require("encode")
    return self._jit("encode", self.task.encode)(self.state, images)

  def decode(self, z: jax.Array) -> jax.Array:
    """Images in [0, 1] of latent points z (the VAE)."""
    self._require("decode")
    return self._jit("decode", self.task.decode)(self.state, z)

  def d_scores(self, images: jax.Array, labels: Optional[np.ndarray] = None
               ) -> Dict[str, jax.Array]:
    """The trained discriminator's scores of images in [0, 1] (GAN runs).

    Args:
      images: [n, h, w, c] at the model's resolution.
      labels: class-conditional GANs: [n] classes to judge them as.

    Returns:
      `task.d_scores`: {"real": D's logit [n]} and, where D has a class
      head, {"class": log-probability of `labels` [n]}.
    """
    self._require("d_scores")
    scores = self._jit("d_scores", self.task.d_scores)
    if labels is None:
      return scores(self._eval_state(), images)
    return scores(self._eval_state(), images, np.asarray(labels, np.int32))

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

  def _require(self, method: str):
    ok = (self.generates if method == "generate" else
          callable(getattr(self.task, method, None)))
    if not ok:
      raise RunError(f"The {self.config.task!r} run in {self.workdir} has no "
                     f"{method}().")

  def _eval_state(self):
    """`task.eval_state(state)`, computed on first use (state is fixed)."""
    if "_ready" not in self.__dict__:
      self.__dict__["_ready"] = self._jit("eval_state",
                                          self.task.eval_state)(self.state)
    return self.__dict__["_ready"]

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
         step: Optional[int] = None,
         truncation: Optional[float] = None) -> Run:
  """Restores a run from its workdir and the config stored with it.

  Args:
    workdir: the run's workdir.
    which: "best" or "latest"; None picks best when the run kept one.
    step: a specific step of that kind (default: the newest).
    truncation: GAN runs that draw latent codes (gan, siamese_gan): sample
      with this `gan.truncation` instead of the stored one (0 = off;
      jaxgen/tasks/gan.py). None keeps the stored value.

  Returns:
    A Run.

  Raises:
    RunError: no such workdir, no checkpoint, a checkpoint that does not
      fit the stored config, or a truncation the run cannot use.
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
    want = (f"step {step} in the {which} checkpoints" if step is not None else
            f"{which} checkpoint")
    raise RunError(
        f"No {want} in {workdir} (checkpoints: {steps['latest'] or 'none'}, "
        f"best: {steps['best'] or 'none'}). Train first with python -m "
        f"jaxgen.main --config=... --workdir={workdir}")
  config = ckpt_lib.stored_config(workdir, which)
  if truncation is not None:
    config = with_truncation(config, truncation, workdir)
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


def with_truncation(config: ml_collections.ConfigDict, value: float,
                    workdir: str = "") -> ml_collections.ConfigDict:
  """A copy of a run's config that samples with `gan.truncation` = value.

  Args:
    config: a stored run config.
    value: the truncation bound (0 = off).
    workdir: the run's folder (or a description), for messages.

  Returns:
    The copy.

  Raises:
    RunError: the run draws no latent codes (only gan and siamese_gan do),
      or `value` is not 0 or a positive number.
  """
  if not hasattr(tasks_lib.task_class(config.task), "sampling_z"):
    raise RunError(
        "Truncation applies to runs that sample latent codes (gan, "
        f"siamese_gan), not to {workdir or 'this run'} ({config.task!r}).")
  try:
    gan_lib.check_truncation(value)
  except ValueError as e:
    raise RunError(str(e)) from e
  config = ml_collections.ConfigDict(config.to_dict())
  config.gan.truncation = float(value)
  return config


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


def mismatch_message(workdir: str, config, error: Exception,
                     whose: str = "its stored config") -> str:
  """One paragraph saying that a checkpoint does not fit a config.

  Args:
    workdir: the run's workdir.
    config: the config whose model the checkpoint was restored into.
    error: what orbax raised (its first line is quoted).
    whose: how to name `config` in the message.

  Returns:
    The message.
  """
  first = str(error).strip().splitlines()[0][:300] if str(error) else ""
  return (f"The checkpoint in {workdir} does not fit the model of {whose} "
          f"(task {config.get('task')!r}, model "
          f"{dict(config.get('model', {}))}): it was written by another task "
          "or a changed architecture. Use a new workdir for a new model. "
          f"(orbax: {first})")


def _flat(tree, prefix: str) -> Dict[str, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def model_differences(stored, config) -> List[str]:
  """How `config` differs from `stored` in its task or model fields.

  Fields only one side has are left out (code may add a field with a default
  that keeps old runs as they were); a restore that then does not fit still
  fails, with `mismatch_message`.

  Args:
    stored: a run's stored config.
    config: a new config.

  Returns:
    Lines "field: stored -> new", empty when they agree.
  """
  old, new = ckpt_lib.config_to_json(stored), ckpt_lib.config_to_json(config)
  if old.get("task") != new.get("task"):
    return [f"task: {old.get('task')!r} -> {new.get('task')!r}"]
  a = _flat(old.get("model", {}), "model.")
  b = _flat(new.get("model", {}), "model.")
  return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a.keys() & b.keys())
          if a[k] != b[k]]


def check_resumable(workdir: str, config: ml_collections.ConfigDict):
  """Fails early when a workdir holds a run of another model.

  The train loop resumes from a workdir's latest checkpoint; restoring one of
  another task or architecture would fail inside orbax with pages of array
  shapes, so this compares the stored config with the new one first.

  Args:
    workdir: the run's workdir (may not exist yet).
    config: the config about to be trained.

  Raises:
    RunError: naming the stored task and config and what differs.
  """
  workdir = os.path.abspath(workdir)
  if not checkpoint_steps(workdir)["latest"]:
    return
  stored = ckpt_lib.stored_config(workdir, "latest")
  diffs = model_differences(stored, config)
  if diffs:
    shown = "; ".join(diffs[:6]) + (
        f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else "")
    raise RunError(
        f"{workdir} holds a {stored.get('task')!r} run on "
        f"{stored.data.get('name')!r} (stored config: "
        f"{os.path.join(workdir, 'config.json')}) whose model differs from "
        f"the new config: {shown}. Use a new --workdir for a new model, or "
        "the stored config to resume that run.")
