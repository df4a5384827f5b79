"""Times GAN train steps on CPU choices: penalty lowerings, alternation.

A gradient penalty (WGAN-GP, R1) differentiates D's input gradient again.
This script times whole jitted train steps (the loop's
`train.jit_train_step`, on random images: no data needed) of one GAN family
(`--family`: the DCGAN of `configs/gan.py`, pix2pix's PatchGAN of
`configs/cgan.py`, or CycleGAN's two PatchGANs of `configs/cyclegan.py`)
without a penalty, with WGAN-GP and with R1 on every D update, once with
the discriminator's configured lowering (`model.downsample_impl=auto`:
penalty calls use `layers.second_order_down_impl`) and once forcing each
given lowering for every call. Cases are timed interleaved, round-robin,
and medians reported, since the machine may be shared.

With --alternation it times the DCGAN's train steps with `gan.d_steps` 1
and 5 and `gan.g_steps` 2, alternating by a lax.cond or by computing the
update every call and selecting (`gan_base.alternate`;
`backend.select_not_cond` picks per backend).

Usage:
  python benchmarks/penalty_bench.py [--family gan|cgan|cyclegan] [--res 64]
      [--width 32] [--batch 64] [--impls mixed,matmul]
      [--penalties none,wgan_gp,r1] [--reps 5] [--alternation]

Prints one line per case: median ms per train step, and the ratio to the
configured ("auto") step of the same penalty, or to the step of the same
schedule with the backend's choice (> 1: the configured choice is faster).
"""

import os
import sys

from absl import flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp

from benchmarks import bench
from jaxgen import backend
from jaxgen import cli
from jaxgen import parallel
from jaxgen import tasks
from jaxgen import train
from jaxgen.tasks import gan_base
# pylint: enable=g-import-not-at-top

PENALTIES = {
    "none": {},
    "wgan_gp": {"loss": "wgan", "gp_weight": 10.0},
    "r1": {"r1_weight": 1.0, "r1_every": 1},
}
FAMILIES = ("gan", "cgan", "cyclegan")


def _config(family: str, res: int, width: int, batch: int):
  """The family's config at `res`, G and D widths `width`, batch `batch`."""
  variant = {"cyclegan": f"cpu,res={res}"}.get(family, f"res={res}")
  config = bench.load_case(f"{family}.py:{variant}", batch)
  config.model.update(g_width=width, d_width=width)
  return config


def _random_batch(task, batch: int):
  """Uniform images in [0, 1] ("image") or [-1, 1] shaped like the task's
  inputs."""
  rng = np.random.default_rng(0)
  out = {}
  for k, v in task.example_batch(batch).items():
    low = 0.0 if k == "image" else -1.0
    out[k] = jnp.asarray(rng.uniform(low, 1.0, v.shape), jnp.float32)
  return out


def _stepper(config, calls: int = 1):
  """A function making `calls` blocking train steps of `config`'s task.

  The step is compiled (and the state placed) here; every call continues
  from the state the last one returned, as the loop does.
  """
  task = tasks.get_task(config)
  mesh = parallel.make_mesh()
  state = parallel.replicate(task.init_state(jax.random.key(0)), mesh)
  batch = _random_batch(task, config.train.batch_size)
  step = train.jit_train_step(task, mesh)
  box = [jax.block_until_ready(step(state, batch, jax.random.key(0)))[0]]

  def run():
    for k in range(calls):
      box[0], _ = step(box[0], batch, jax.random.key(k))
    jax.block_until_ready(box[0])
  return run


def penalty_case(family: str, res: int, width: int, batch: int, impl: str,
                 penalty: str):
  """A compiled train step of `family` with `penalty` and lowering `impl`.

  Args:
    family: a key of FAMILIES.
    res: image resolution.
    width: G and D widths.
    batch: batch size.
    impl: `model.downsample_impl` ("auto" or a lowering).
    penalty: a key of PENALTIES.

  Returns:
    A function running one train step (blocking).
  """
  config = _config(family, res, width, batch)
  config.model.downsample_impl = impl
  config.gan.update(PENALTIES[penalty])
  if penalty == "wgan_gp" and family == "gan":
    config.model.d_norm = "layer"  # A critic without BatchNorm.
  return _stepper(config)


def run(family="gan", res=64, width=32, batch=64, impls=("mixed", "matmul"),
        reps=5, penalties=tuple(PENALTIES)):
  """Times every (penalty, impl) case; returns {(penalty, impl): ms}."""
  return bench.interleaved_medians(
      {(p, i): penalty_case(family, res, width, batch, i, p)
       for p in penalties for i in ("auto", *impls)}, reps)


_CALLS = 5  # Train steps per timing in --alternation.


def alternation(res=64, width=32, batch=64, reps=5):
  """Times train steps per schedule and alternation; {(schedule, how): ms}."""
  cases = {}
  for schedule, fields in (("d_steps=1", {}), ("d_steps=5", {"d_steps": 5}),
                           ("g_steps=2", {"g_steps": 2})):
    for how in ("select", "cond"):
      config = _config("gan", res, width, batch)
      config.gan.update(fields)
      original = gan_base.backend.select_not_cond
      gan_base.backend.select_not_cond = lambda h=how: h == "select"
      try:  # The choice is read while tracing, i.e. on the first call.
        # Several calls per timing: the schedule's phases.
        cases[(schedule, how)] = _stepper(config, _CALLS)
      finally:
        gan_base.backend.select_not_cond = original
  return bench.interleaved_medians(cases, reps, _CALLS)


def _define(fv, argv):
  del argv
  flags.DEFINE_enum("family", "gan", list(FAMILIES), "GAN family (penalty "
                    "timings).", flag_values=fv)
  flags.DEFINE_integer("res", 64, "Image resolution.", flag_values=fv)
  flags.DEFINE_integer("width", 32, "G and D widths.", flag_values=fv)
  flags.DEFINE_integer("batch", 64, "Batch size.", flag_values=fv)
  flags.DEFINE_list("impls", ["mixed", "matmul"], "Lowerings to force.",
                    flag_values=fv)
  flags.DEFINE_list("penalties", list(PENALTIES), "Penalties to time.",
                    flag_values=fv)
  flags.DEFINE_integer("reps", 5, "Timed repetitions.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_bool("alternation", False, "Time train steps per G/D "
                    "schedule, alternating by select or by lax.cond.",
                    flag_values=fv)


def _bench(fv):
  unknown = sorted(set(fv.penalties) - set(PENALTIES))
  if unknown:
    raise cli.UsageError(f"--penalties: {', '.join(unknown)} unknown (known: "
                         f"{', '.join(PENALTIES)}).")
  if fv.alternation and fv.family != "gan":
    raise cli.UsageError("--alternation times the DCGAN (--family=gan) only.")
  if fv.alternation:
    found = alternation(fv.res, fv.width, fv.batch, fv.reps)
    chosen = "select" if backend.select_not_cond() else "cond"
    print(f"Train step, DCGAN {fv.res} px, width {fv.width}, batch "
          f"{fv.batch}, {jax.default_backend()} (chosen: {chosen}); median "
          f"of {fv.reps} x {_CALLS} steps")
    for (schedule, how), ms in found.items():
      ratio = ms / found[(schedule, chosen)]
      print(f"{schedule:10s} {how:7s} {ms:8.1f} ms  x{ratio:.2f} of {chosen}")
    return
  found = run(fv.family, fv.res, fv.width, fv.batch, fv.impls, fv.reps,
              fv.penalties)
  print(f"Train step, {fv.family} {fv.res} px, width {fv.width}, batch "
        f"{fv.batch}, {jax.default_backend()}; median of {fv.reps}")
  for (penalty, impl), ms in found.items():
    ratio = ms / found[(penalty, "auto")]
    print(f"{penalty:8s} {impl:15s} {ms:8.1f} ms  x{ratio:.2f} of auto")


def main(argv=None) -> int:
  """The command line; returns the exit status."""
  return cli.run(_bench, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
