"""The one training loop shared by every task.

    state, metrics = train_step(state, batch, fold_in(rng, step))

The loop owns everything that is not model-specific: sharding the batch over
a `Mesh` data axis, the grain input iterator, checkpoints and exact resume,
metric writers, sample grids, evaluation, the loss plot, and stopping on a
non-finite loss. Tasks (jaxgen/tasks) own models, losses and optimizers.
"""

import dataclasses
import logging as logging_std
import os
import time
from typing import Dict, Optional

from absl import logging
from clu import metric_writers
from clu import metrics as clu_metrics
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen import backend
from jaxgen import checkpoint as ckpt_lib
from jaxgen import distributed
from jaxgen import parallel
from jaxgen import reporting
from jaxgen import run as run_lib
from jaxgen import tasks as tasks_lib
from jaxgen.tasks import base as task_base
from jaxgen.data import pipeline
from jaxgen.evaluation import in_training


class _DropChatter(logging_std.Filter):
  """Drops INFO records of libraries that log every checkpoint file move."""
  _NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}grain{os.sep}")

  def filter(self, record):
    return (record.levelno >= logging_std.WARNING or
            not any(p in record.pathname for p in self._NOISY))


logging_std.getLogger("absl").addFilter(_DropChatter())


class NonFiniteLossError(FloatingPointError):
  """Raised when a training metric becomes NaN or infinite."""


@dataclasses.dataclass
class RunResult:
  """What a finished (or stopped) run returns, for notebooks and tests."""
  state: object
  step: int
  workdir: str
  train_metrics: Dict[str, float]
  eval_metrics: Dict[str, float]
  outputs: Dict[str, str]


def _collection(names):
  return clu_metrics.Collection.create(
      **{n: clu_metrics.Average.from_output(n) for n in names})


def _average(rows):
  """clu Average over a list of metric dicts (host arrays)."""
  coll_cls = _collection(sorted(rows[0]))
  coll = None
  for row in rows:
    single = coll_cls.single_from_model_output(**row)
    coll = single if coll is None else coll.merge(single)
  return {k: float(v) for k, v in coll.compute().items()}


def _check_finite(pending, last_good: Optional[int], workdir: str):
  """Raises NonFiniteLossError naming the first bad step and metric."""
  for step, metrics in pending:
    for name, value in metrics.items():
      if not np.all(np.isfinite(value)):
        where = (f"the last good checkpoint (step {last_good}) is kept in "
                 f"{workdir}/checkpoints" if last_good is not None else
                 "no checkpoint had been saved yet")
        raise NonFiniteLossError(
            f"Non-finite training metric {name}={value} at step {step}; "
            f"training stopped and {where}. Lower the learning rate or "
            "check the data.")


class _Progress:
  """steps/s and ETA between log lines."""

  def __init__(self, start_step, total):
    self.total = total
    self.t, self.step = time.time(), start_step

  def update(self, step):
    now = time.time()
    rate = (step - self.step) / max(now - self.t, 1e-9)
    self.t, self.step = now, step
    eta = (self.total - step) / max(rate, 1e-9)
    return rate, eta


def _fmt_eta(seconds):
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h:d}:{m:02d}:{s:02d}"


def jit_train_step(task, mesh):
  """The loop's jitted step: `(state, batch, rng) -> (state, metrics)`.

  The rng is folded with `state.step`, the batch is split over the mesh's
  data axis, everything else is replicated, and the state is donated so that
  XLA updates parameters and optimizer moments in place.

  Args:
    task: a jaxgen.tasks.base.Task.
    mesh: the device mesh (see jaxgen/parallel.py).

  Returns:
    The jitted function (benchmarks/bench.py times this same function).
  """
  repl, data_sh = parallel.replicated(mesh), parallel.data_sharding(mesh)

  def step_fn(state, batch, rng):
    return task.train_step(state, batch, jax.random.fold_in(rng, state.step))

  return backend.jit(step_fn, in_shardings=(repl, data_sh, repl),
                     out_shardings=(repl, repl), donate_argnums=(0,))


def jit_eval_step(task, mesh):
  """The loop's jitted eval: `(state, batch, rng) -> (sums, count)`.

  `task.eval_step` returns per-example metrics; they are summed over the
  examples whose `batch["mask"]` is 1 inside the program, so the result is
  replicated and correct with padding on any number of devices and
  processes (no per-process host arithmetic on global outputs).

  Args:
    task: a jaxgen.tasks.base.Task.
    mesh: the device mesh.

  Returns:
    The jitted function; `sums` maps each metric to its masked sum and
    `count` is the number of real examples.
  """
  repl, data_sh = parallel.replicated(mesh), parallel.data_sharding(mesh)

  def eval_fn(state, batch, rng):
    batch = dict(batch)
    mask = batch.pop("mask").astype(jnp.float32)
    out = task.eval_step(state, batch, rng)
    return ({k: jnp.sum(v.astype(jnp.float32) * mask) for k, v in out.items()},
            jnp.sum(mask))

  return backend.jit(eval_fn, in_shardings=(repl, data_sh, repl),
                     out_shardings=repl)


def jit_eval_state(task, mesh):
  """`task.eval_state`, jitted with the state replicated on the mesh."""
  repl = parallel.replicated(mesh)
  return backend.jit(task.eval_state, in_shardings=(repl,),
                     out_shardings=repl)


def init_state(task, rng, mesh):
  """`task.init_state(rng)` built directly into its replicated sharding.

  Jitted with `out_shardings`, so no process materialises the state on one
  device first and copies it.

  Args:
    task: a jaxgen.tasks.base.Task.
    rng: the init key.
    mesh: the device mesh.

  Returns:
    The state, replicated over the mesh.
  """
  return jax.jit(task.init_state, out_shardings=parallel.replicated(mesh))(rng)


def with_data_facts(config: ml_collections.ConfigDict,
                    num_train: int) -> ml_collections.ConfigDict:
  """A copy of `config` with the epoch length (and epoch-based length) set.

  Sets `train.steps_per_epoch` from the training split's size and, when
  `train.num_epochs` > 0, `train.num_steps` = num_epochs * steps_per_epoch,
  so that tasks built from the returned config (and from the copy stored
  with checkpoints) know the run's length in steps.

  Args:
    config: the experiment config (not modified).
    num_train: examples in the training split.

  Returns:
    The updated copy.
  """
  config = config.copy_and_resolve_references()
  tc = config.train
  with config.unlocked():
    tc.steps_per_epoch = max(1, num_train // tc.batch_size)
    if tc.get("num_epochs", 0) > 0:
      tc.num_steps = int(tc.num_epochs) * tc.steps_per_epoch
  return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_after: Optional[int] = None) -> RunResult:
  """Trains `config.task`, resuming from `workdir` if it holds a checkpoint.

  Args:
    config: experiment config (see configs/).
    workdir: output folder: checkpoints, TensorBoard logs, samples, plots.
    stop_after: stop (with a checkpoint) after this many steps of this call,
      as a preemption would; None runs to `config.train.num_steps`.

  Returns:
    A RunResult with the final state, metrics and output paths.
  """
  workdir = reporting.workdir_path(workdir)
  # Before any data or model work: a workdir of another model is one error.
  run_lib.check_resumable(workdir, config)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  is_main = distributed.is_main()
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.train.batch_size, mesh)

  train_ds = pipeline.build(config.data, "train")
  test_ds = pipeline.build(config.data, "test")
  config = with_data_facts(config, len(train_ds.source))
  tc = config.train
  task = tasks_lib.get_task(config)
  # FID/KID (config.eval); None when off. Fails here, before any training,
  # when best_metric is eval/fid and the Inception weights are missing.
  fid = in_training.from_config(config, task, test_ds)
  logging.info("Data %s: %d train / %d test examples.", config.data.name,
               len(train_ds.source), len(test_ds.source))
  steps_per_epoch = tc.steps_per_epoch
  # Intervals <= 0 mean "once per epoch".
  log_every, eval_every, sample_every, checkpoint_every = (
      v if v > 0 else steps_per_epoch for v in (
          tc.log_every, tc.eval_every, tc.sample_every, tc.checkpoint_every))

  rng = jax.random.key(config.seed)
  init_rng, train_rng, eval_rng, sample_rng = jax.random.split(rng, 4)
  example = pipeline.first_batch(train_ds, tc.batch_size)
  example.pop("mask")
  _check_data(task, example)
  state = init_state(task, init_rng, mesh)

  ckpt = ckpt_lib.Checkpointer(workdir, tc.keep, tc.best_metric, tc.best_mode)
  train_iter = pipeline.train_iterator(
      train_ds, tc.batch_size, config.seed, tc.data_threads, tc.prefetch)
  start = 0
  if ckpt.latest_step() is not None:
    try:
      state, data_state, meta = ckpt.restore(state, with_data=True)
    except (ValueError, KeyError, TypeError) as e:
      # A change check_resumable cannot see (e.g. the data's resolution).
      ckpt.close()
      raise run_lib.RunError(run_lib.mismatch_message(
          workdir, config, e, "the new config")) from e
    train_iter.set_state(data_state)
    start = int(meta["step"])
    logging.info("Resumed from the checkpoint at step %d in %s.", start,
                 workdir)
  else:
    try:
      state = task.load_pretrained(state)
    except Exception:
      ckpt.close()
      raise
  history = reporting.History(os.path.join(workdir, "metrics.jsonl"))
  if is_main:
    history.trim(start)
    epath.Path(workdir, "config.json").write_text(
        config.to_json_best_effort(indent=2))

  # TensorBoard events from process 0 only; console lines come from the
  # progress log below rather than a second LoggingWriter copy.
  writer = metric_writers.MultiWriter(
      [metric_writers.AsyncWriter(metric_writers.SummaryWriter(
          os.path.join(workdir, "tensorboard")))] if is_main else [])
  if start == 0:
    writer.write_hparams({k: v for k, v in _flatten(config).items()})

  p_train = jit_train_step(task, mesh)
  p_eval = jit_eval_step(task, mesh)
  p_eval_state = jit_eval_state(task, mesh)
  sample_batch = pipeline.spread_batch(test_ds, tc.num_samples)
  sample_batch = parallel.replicate(sample_batch, mesh)
  outputs = {"workdir": workdir,
             "tensorboard": os.path.join(workdir, "tensorboard"),
             "samples": os.path.join(workdir, "samples"),
             "checkpoints": os.path.join(workdir, "checkpoints")}

  def evaluate(step, ready, with_fid=False):
    parts = [p_eval(ready, parallel.shard_batch(batch, mesh),
                    jax.random.fold_in(eval_rng, i))
             for i, batch in enumerate(pipeline.eval_batches(
                 test_ds, tc.batch_size, tc.eval_batches))]
    parts = jax.device_get(parts)
    count = sum(float(c) for _, c in parts)
    result = {f"eval/{k}": sum(float(s[k]) for s, _ in parts) / count
              for k in parts[0][0]}
    if with_fid:
      result.update(fid(ready))
    writer.write_scalars(step, result)
    if is_main:
      history.append(step, result)
    logging.info("Eval at step %d: %s", step, _fmt(result))
    return result

  def write_samples(step, ready):
    images = jax.device_get(task.samples(ready, sample_batch, sample_rng))
    for name, imgs in images.items():
      grid = reporting.make_grid(imgs, task.grid_columns(name))
      writer.write_images(step, {f"samples/{name}": grid[None]})
      if is_main:
        reporting.save_png(
            os.path.join(outputs["samples"], f"{name}_{step:07d}.png"), grid)
        reporting.save_png(
            os.path.join(outputs["samples"], f"{name}_latest.png"), grid)

  progress = _Progress(start, tc.num_steps)
  pending = []
  train_metrics, eval_metrics = {}, {}
  last_saved = ckpt.latest_step()
  step = start
  end = tc.num_steps if stop_after is None else min(tc.num_steps,
                                                     start + stop_after)
  batches = parallel.prefetch_to_mesh(train_iter, mesh)
  preempted = False
  try:
    with metric_writers.ensure_flushes(writer), \
        distributed.Preemption() as preemption:
      for step in range(start + 1, end + 1):
        # The iterator runs ahead; `data_state` is the position after the
        # batches trained on, which is what a checkpoint must hold.
        batch, data_state = next(batches)
        state, metrics = p_train(state, batch, train_rng)
        pending.append((step, metrics))

        preempted = preemption.requested(step)
        final = step == end or preempted
        epoch_end = tc.checkpoint_at_epoch_end and step % steps_per_epoch == 0
        save = (step % checkpoint_every == 0 or epoch_end or final)
        if step % log_every == 0 or save:
          pending = [(s, jax.device_get(m)) for s, m in pending]
          _check_finite(pending, last_saved, workdir)
          if step % log_every == 0 or final:
            train_metrics = {f"train/{k}": v
                             for k, v in _average([m for _, m in pending]).items()}
            rate, eta = progress.update(step)
            train_metrics["train/steps_per_sec"] = rate
            writer.write_scalars(step, train_metrics)
            if is_main:
              history.append(step, train_metrics)
            logging.info("[%d/%d] %.2f steps/s, ETA %s, epoch %.1f | %s", step,
                         tc.num_steps, rate, _fmt_eta(eta),
                         step / steps_per_epoch, _fmt(train_metrics))
            pending = []
        fid_due = fid is not None and fid.due(step, tc.num_steps)
        eval_due = step % eval_every == 0 or step == tc.num_steps or fid_due
        sample_due = step % sample_every == 0 or step == tc.num_steps
        if eval_due or sample_due:
          # Once for the evaluation and the grid of this step (task.eval_state).
          ready = p_eval_state(state)
        if eval_due:
          eval_metrics = evaluate(step, ready, fid_due)
          ckpt.maybe_save_best(step, state, data_state, config,
                               eval_metrics)
        if sample_due:
          write_samples(step, ready)
        if save:
          ckpt.save(step, state, data_state, config,
                    {**train_metrics, **eval_metrics})
          last_saved = step
        if preempted:
          break
  finally:
    # Also on errors: finish pending async saves so the last good
    # checkpoint is complete on disk.
    ckpt.wait()
    ckpt.close()
    writer.close()
  if is_main and step == tc.num_steps:
    plot = reporting.plot_history(history.read(),
                                  os.path.join(workdir, "loss.png"),
                                  title=f"{config.task} ({config.data.name})")
    if plot:
      outputs["loss_plot"] = plot
  if step == tc.num_steps:
    logging.info(
        "Done: %d steps. Samples: %s | loss plot: %s | checkpoints: %s | "
        "TensorBoard: tensorboard --logdir %s", step, outputs["samples"],
        outputs.get("loss_plot", "-"), outputs["checkpoints"],
        outputs["tensorboard"])
  else:
    logging.info("%s at step %d with a checkpoint in %s; run the same "
                 "command again to resume.",
                 "Preempted (SIGTERM)" if preempted else "Stopped", step,
                 outputs["checkpoints"])
  return RunResult(state, step, workdir, train_metrics, eval_metrics, outputs)


# Config fields that set each batch key's channels (for error messages).
_CHANNEL_FIELDS = {
    "image": "config.data.channels",
    "sketch": "config.data.sketch_channels",
    "photo": "config.data.photo_channels",
    "a": "config.data.a_channels",
    "b": "config.data.b_channels",
}


def _check_data(task, example):
  """The data's channels must be those the task built its models for."""
  try:
    task.example_batch(1)
  except NotImplementedError:
    return
  task_base.check_example(task, example, _CHANNEL_FIELDS)


def _fmt(metrics):
  return ", ".join(f"{k.split('/', 1)[-1]}={v:.4g}"
                   for k, v in sorted(metrics.items()))


def _flatten(config, prefix=""):
  out = {}
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(v, (int, float, str, bool)):
      out[f"{prefix}{k}"] = v
  return out
