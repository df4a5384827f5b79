"""Times GAN steps on CPU choices: penalty lowerings, alternation by select.

A gradient penalty (WGAN-GP, R1) differentiates D's input gradient again.
This script times one jitted D update of the DCGAN task (`configs/gan.py`,
random images, no data needed) without a penalty, with WGAN-GP and with R1
on every update, once with the discriminator's configured lowering
(`model.downsample_impl=auto`: penalty calls use
`layers.second_order_down_impl`) and once forcing each given lowering for
every call. Cases are timed interleaved, round-robin, and medians reported,
since the machine may be shared.

With --alternation it times whole train steps (the loop's jitted step) of
the same task with `gan.d_steps` 1 and 5 and `gan.g_steps` 2, alternating by
a lax.cond or by computing the update every call and selecting
(`gan_base.alternate`; `backend.select_not_cond` picks per backend).

Usage:
  python benchmarks/penalty_bench.py [--res 64] [--width 32] [--batch 64]
      [--impls mixed,matmul] [--reps 5] [--alternation]

Prints one line per case: median ms per step, and the ratio to the
configured ("auto") step of the same penalty, or to the step of the same
schedule with the backend's choice (> 1: the configured choice is faster).
"""

import os
import sys
import time

from absl import flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp

from jaxgen import backend
from jaxgen import cli
from jaxgen import configlib
from jaxgen.tasks import gan
# pylint: enable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENALTIES = {
    "none": {},
    "wgan_gp": {"loss": "wgan", "gp_weight": 10.0},
    "r1": {"r1_weight": 1.0, "r1_every": 1},
}


def _config(res: int, width: int):
  """configs/gan.py at `res` with G and D widths `width`."""
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"gan.py:res={res}"))
  config.model.update(g_width=width, d_width=width)
  return config


def _medians(cases, reps: int, calls: int = 1):
  """{key: median ms per call} of `reps` interleaved runs of each case.

  Args:
    cases: {key: function making `calls` blocking calls}.
    reps: timed rounds over all cases.
    calls: calls per function run.

  Returns:
    The medians.
  """
  times = {k: [] for k in cases}
  for _ in range(reps):
    for key, fn in cases.items():
      start = time.perf_counter()
      fn()
      times[key].append((time.perf_counter() - start) * 1e3 / calls)
  return {k: float(np.median(v)) for k, v in times.items()}


def d_step(res: int, width: int, batch: int, impl: str, penalty: str):
  """One jitted D update of the DCGAN task from a fixed state, compiled.

  Args:
    res: image resolution.
    width: G and D widths.
    batch: batch size.
    impl: `model.downsample_impl` ("auto" or a lowering).
    penalty: a key of PENALTIES.

  Returns:
    A function running one D update (blocking) from a fixed state.
  """
  config = _config(res, width)
  config.model.downsample_impl = impl
  config.gan.update(PENALTIES[penalty])
  if penalty == "wgan_gp":
    config.model.d_norm = "layer"  # A critic without BatchNorm.
  task = gan.GANTask(config)
  state = task.init_state(jax.random.key(0))
  rng = np.random.default_rng(0)
  real = jnp.asarray(rng.uniform(-1, 1, (batch, res, res, 1)), jnp.float32)
  # The whole (state, metrics): returning the metrics alone would let XLA
  # drop the parameter gradients, i.e. the second differentiation.
  # pylint: disable-next=protected-access
  step = backend.jit(lambda s, k: task._d_update(s, real, k, True))
  jax.block_until_ready(step(state, jax.random.key(1)))  # Compile.
  return lambda: jax.block_until_ready(step(state, jax.random.key(2)))


def run(res=64, width=32, batch=64, impls=("mixed", "matmul"), reps=5):
  """Times every (penalty, impl) case; returns {(penalty, impl): ms}."""
  return _medians({(p, i): d_step(res, width, batch, i, p)
                   for p in PENALTIES for i in ("auto", *impls)}, reps)


_CALLS = 5  # Train steps per timing in --alternation.


def alternation(res=64, width=32, batch=64, reps=5):
  """Times train steps per schedule and alternation; {(schedule, how): ms}."""
  from jaxgen import parallel, train  # pylint: disable=g-import-not-at-top
  from jaxgen.tasks import gan_base  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  images = {"image": jnp.asarray(rng.uniform(0, 1, (batch, res, res, 1)),
                                 jnp.float32)}
  cases = {}
  for schedule, fields in (("d_steps=1", {}), ("d_steps=5", {"d_steps": 5}),
                           ("g_steps=2", {"g_steps": 2})):
    for how in ("select", "cond"):
      config = _config(res, width)
      config.gan.update(fields)
      task = gan.GANTask(config)
      state = jax.device_put(task.init_state(jax.random.key(0)),
                             parallel.replicated(mesh))
      original = gan_base.backend.select_not_cond
      gan_base.backend.select_not_cond = lambda h=how: h == "select"
      try:  # The choice is read while tracing, i.e. on the first call.
        step = train.jit_train_step(task, mesh)
        state, _ = jax.block_until_ready(
            step(state, images, jax.random.key(0)))
      finally:
        gan_base.backend.select_not_cond = original
      box = [state]

      def one(step=step, box=box):
        # Several calls per timing: the schedule's phases.
        for k in range(_CALLS):
          box[0], _ = step(box[0], images, jax.random.key(k))
        jax.block_until_ready(box[0])
      cases[(schedule, how)] = one
  return _medians(cases, reps, _CALLS)


def _define(fv, argv):
  del argv
  flags.DEFINE_integer("res", 64, "Image resolution.", flag_values=fv)
  flags.DEFINE_integer("width", 32, "G and D widths.", flag_values=fv)
  flags.DEFINE_integer("batch", 64, "Batch size.", flag_values=fv)
  flags.DEFINE_list("impls", ["mixed", "matmul"], "Lowerings to force.",
                    flag_values=fv)
  flags.DEFINE_integer("reps", 5, "Timed repetitions.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_bool("alternation", False, "Time train steps per G/D "
                    "schedule, alternating by select or by lax.cond.",
                    flag_values=fv)


def _bench(fv):
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
  found = run(fv.res, fv.width, fv.batch, fv.impls, fv.reps)
  print(f"D step, DCGAN {fv.res} px, width {fv.width}, batch {fv.batch}, "
        f"{jax.default_backend()}; median of {fv.reps}")
  for (penalty, impl), ms in found.items():
    ratio = ms / found[(penalty, "auto")]
    print(f"{penalty:8s} {impl:15s} {ms:8.1f} ms  x{ratio:.2f} of auto")


def main(argv=None) -> int:
  """The command line; returns the exit status."""
  return cli.run(_bench, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
