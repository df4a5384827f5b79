"""Checkpoints with orbax: the last k, the best by a metric, exact resume.

A checkpoint holds everything a resume needs: the task state (parameters,
optimizer states, step), the input iterator's position, and the config, so
that later tools (evaluate, sample) need no flags repeated. The RNG is a
function of (config.seed, step), so it is restored with the step.

All processes of a multi-process run save together: orbax writes the state
collectively and process 0 the JSON items; each process writes its own input
position (grain's orbax handler: `data/process_<i>-of-<n>.json`) and reads
it back on resume. The position counts global batches, one per step (see
`pipeline.train_iterator`), so when a run resumes with another number of
processes, or from a checkpoint without positions, it continues at the
batch after the checkpoint's step, exactly as an uninterrupted run would.

Layout: WORKDIR/checkpoints/<step>/ (latest k) and WORKDIR/best/<step>/.
"""

import dataclasses
import itertools
import json
import os
from typing import Any, List, Optional, Tuple

from absl import logging
import grain.checkpoint as grain_ckpt
import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxgen import reporting


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe dict of the config."""
  return json.loads(config.to_json_best_effort())


def _options(keep: int, name: str) -> ocp.CheckpointManagerOptions:
  # Each manager's barriers get their own names: with several processes,
  # two managers saving at one step would otherwise meet at one barrier.
  return ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=name))


class _Position:
  """An iterator position (a JSON-able dict) as grain's orbax handler saves
  and restores it: one file per process."""

  def __init__(self, state: Optional[dict] = None):
    self.state = state

  def get_state(self) -> bytes:
    return json.dumps(self.state).encode()

  def set_state(self, raw: bytes):
    self.state = json.loads(raw)

  def start_prefetch(self):
    pass


class Checkpointer:
  """Saves and restores the latest k checkpoints and the best one.

  Attributes:
    best_value: the best metric value seen so far (None before the first).
  """

  def __init__(self, workdir: str, keep: int = 3, best_metric: str = "",
               best_mode: str = "min"):
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}.")
    self.workdir = reporting.workdir_path(workdir)
    items = ("state", "data", "meta")
    self.latest = ocp.CheckpointManager(
        os.path.join(self.workdir, "checkpoints"),
        options=_options(keep, "latest"), item_names=items)
    self.best_metric, self.best_mode = best_metric, best_mode
    self.best = None
    self.best_value = None
    if best_metric:
      self.best = ocp.CheckpointManager(
          os.path.join(self.workdir, "best"), options=_options(1, "best"),
          item_names=items)
      step = self.best.latest_step()
      if step is not None:
        meta = self.best.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        self.best_value = meta.get("metrics", {}).get(best_metric)

  @staticmethod
  def _args(state, data_state, meta):
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain_ckpt.CheckpointSave(_Position(data_state)),
        meta=ocp.args.JsonSave(meta))

  def save(self, step: int, state, data_state: dict, config,
           metrics: Optional[dict] = None) -> bool:
    """Saves a checkpoint at `step` unless one exists there already."""
    if step in self.latest.all_steps():
      return False
    meta = {"step": step, "config": config_to_json(config),
            "metrics": metrics or {}}
    self.latest.save(step, args=self._args(state, data_state, meta),
                     force=True)
    logging.info("Saved checkpoint at step %d to %s.", step,
                 self.latest.directory)
    return True

  def maybe_save_best(self, step: int, state, data_state: dict, config,
                      metrics: dict) -> bool:
    """Saves to best/ when `metrics[best_metric]` improves; returns whether."""
    if self.best is None or self.best_metric not in metrics:
      return False
    value = float(metrics[self.best_metric])
    better = (self.best_value is None or
              (value < self.best_value if self.best_mode == "min"
               else value > self.best_value))
    if not better or value != value:  # NaN never wins.
      return False
    self.best_value = value
    meta = {"step": step, "config": config_to_json(config),
            "metrics": {k: float(v) for k, v in metrics.items()}}
    self.best.save(step, args=self._args(state, data_state, meta), force=True)
    logging.info("New best %s=%.5g at step %d.", self.best_metric, value, step)
    return True

  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def restore(self, target_state, which: str = "latest",
              step: Optional[int] = None, with_data: bool = False
              ) -> Tuple[Any, Optional[dict], dict]:
    """Restores (state, data_state, meta) shaped and sharded like the target.

    Args:
      target_state: a freshly initialised state (structure, dtypes, sharding)
        or its `jax.eval_shape`.
      which: "latest" or "best".
      step: a specific step (default: the newest in that directory).
      with_data: also return this process's input position (else None).

    Returns:
      (state, data iterator state, meta dict with "step", "config", "metrics").
    """
    mngr = self.best if which == "best" else self.latest
    if mngr is None:
      raise ValueError("No best checkpoint: config.train.best_metric is unset.")
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No {which} checkpoint in {self.workdir}.")
    restore = lambda target: mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    try:
      out = restore(target_state)
      state = out["state"]
    except ValueError as error:
      out = None
      # A checkpoint written before the state gained an optional field
      # (the GAN families' EMA generator, cgan's label classifier; None when
      # off) lacks it, while orbax keeps a None field it had as a tree
      # entry: try the set fields with each subset of the None ones.
      for target in _older_targets(target_state):
        try:
          out = restore(target)
          break
        except ValueError:
          continue
      if out is None:
        raise error
      state = dataclasses.replace(target_state, **out["state"])
    data = _restore_position(mngr, step) if with_data else None
    return state, data, out["meta"]

  def wait(self):
    self.latest.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self):
    self.latest.close()
    if self.best is not None:
      self.best.close()


def _older_targets(state) -> List[dict]:
  """Restore targets for a checkpoint that lacks some of `state`'s None
  fields: dicts of the set fields plus each proper subset of the None
  ones, largest first (none for a non-dataclass or a state without None
  fields)."""
  if not dataclasses.is_dataclass(state):
    return []
  # Static fields (flax.struct.field(pytree_node=False)) are not stored.
  fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
            if f.metadata.get("pytree_node", True)}
  present = {k: v for k, v in fields.items() if v is not None}
  unset = [k for k in fields if k not in present]
  return [dict(present, **dict.fromkeys(kept))
          for n in range(len(unset) - 1, -1, -1)
          for kept in itertools.combinations(unset, n)]


def _restore_position(mngr: ocp.CheckpointManager, step: int) -> dict:
  """This process's saved input position, or the one implied by `step`."""
  name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  if (mngr.directory / str(step) / "data" / name).exists():
    position = _Position()
    mngr.restore(step, args=ocp.args.Composite(
        data=grain_ckpt.CheckpointRestore(position)))
    return position.state
  logging.info("Checkpoint %d has no input position for process %d of %d; "
               "continuing at global batch %d (one per step).", step,
               jax.process_index(), jax.process_count(), step)
  return {"next_index": step}


def stored_config(workdir: str, which: str = "latest") -> ml_collections.ConfigDict:
  """The config saved with a run's newest (or best) checkpoint.

  Args:
    workdir: the run's workdir.
    which: "latest" or "best".

  Returns:
    The ConfigDict the run was trained with.
  """
  sub = "best" if which == "best" else "checkpoints"
  mngr = ocp.CheckpointManager(
      os.path.join(reporting.workdir_path(workdir), sub),
      item_names=("state", "data", "meta"))
  step = mngr.latest_step()
  if step is None:
    raise FileNotFoundError(
        f"No checkpoint under {os.path.join(workdir, sub)}; train first with "
        "python -m jaxgen.main --config=... --workdir=" + workdir)
  meta = mngr.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))["meta"]
  mngr.close()
  return ml_collections.ConfigDict(meta["config"])
