"""Times UpConv/DownConv implementations against PyTorch on this machine.

Each case times one jitted forward+backward: value_and_grad w.r.t. input and
kernel of sum(y * g), with g a fixed random cotangent (so neither framework
can shortcut an all-ones gradient). PyTorch runs ConvTranspose2d(4, 2, 1) /
Conv2d(4, 2, 1) forward + backward on the same data; for the 3x3 cases (kinds
up3/down3) ConvTranspose2d(3, 2, 1, output_padding=1) / Conv2d(3, 2, 1). All
implementations of a case are timed interleaved, round-robin, and medians are
reported, since the machine may be shared. torch uses as many threads as XLA
sees cores.

Usage:
  python benchmarks/layers_bench.py [--cases up,down,up3,down3] [--reps 5]
      [--impls transpose,subpixel,matmul,conv,...] [--flag_sweep]

Prints a table and one JSON line per case and implementation with the median
ms and ratio = torch_ms / jax_ms (> 1 means jaxgen is faster). With
--flag_sweep it reruns itself under several XLA_FLAGS settings instead.
"""

import json
import os
import subprocess
import sys
import time

from absl import flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxgen import cli  # pylint: disable=g-import-not-at-top

# (kind, batch, H(=W), Cin, Cout). 4x4 kinds (up, down) batch 8; the pix2pix
# rows are the decoder/encoder layers of the 256 px U-Net (ngf=64).
CASES = [
    ("up", 8, 8, 64, 128),
    ("up", 8, 32, 128, 64),
    ("up", 8, 64, 64, 3),
    ("up", 8, 8, 1024, 512),    # pix2pix decoder 8->16
    ("up", 8, 16, 1024, 256),   # pix2pix decoder 16->32
    ("up", 8, 32, 512, 128),    # pix2pix decoder 32->64
    ("up", 8, 64, 256, 64),     # pix2pix decoder 64->128
    ("up", 8, 128, 128, 3),     # pix2pix decoder 128->256
    ("down", 8, 256, 3, 64),    # pix2pix encoder 256->128
    ("down", 8, 128, 64, 128),
    ("down", 8, 64, 128, 256),
    ("down", 8, 32, 256, 512),
    ("down", 8, 16, 512, 512),
]
# CycleGAN's ResNet generator (ngf=64, 3x3 kernels): its two down- and two
# up-sampling layers as (kind, input size at 128 px, Cin, Cout), run at 128
# and 256 px, batch 1.
_RESNET_LAYERS = [
    ("down3", 128, 64, 128),
    ("down3", 64, 128, 256),
    ("up3", 32, 256, 128),
    ("up3", 64, 128, 64),
]
CASES += [(kind, 1, h * scale, cin, cout)
          for kind, h, cin, cout in _RESNET_LAYERS for scale in (1, 2)]

FLAG_SETS = [
    "",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_use_thunk_runtime=false",
]


def _kernel_size(kind):
  return 3 if kind.endswith("3") else 4


def _out_size(kind, h):
  """Output size: 2H up; (H + 2 - k) // 2 + 1 down (PyTorch, padding 1)."""
  if kind.startswith("up"):
    return 2 * h
  return (h + 2 - _kernel_size(kind)) // 2 + 1


def _time(fn):
  start = time.perf_counter()
  fn()
  return (time.perf_counter() - start) * 1e3


def bench_case(kind, n, h, cin, cout, impls, reps, slow_ms):
  """Returns {impl or 'torch': median ms} for one case."""
  import jax
  import jax.numpy as jnp
  import torch
  from jaxgen import backend
  from jaxgen.models import layers

  up, ks = kind.startswith("up"), _kernel_size(kind)
  fns = layers.UP_FNS if up else layers.DOWN_FNS
  if ks == 3:
    fns = layers.UP3_FNS if up else layers.DOWN3_FNS
  ho = _out_size(kind, h)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, h, h, cin)).astype(np.float32)
  k = (rng.normal(size=(ks, ks, cin, cout)) * 0.05).astype(np.float32)
  g = rng.normal(size=(n, ho, ho, cout)).astype(np.float32)
  xj, kj, gj = jnp.asarray(x), jnp.asarray(k), jnp.asarray(g)

  runs = {}
  for impl in impls:
    if impl not in fns:
      continue
    # g is an argument, not a closed-over constant XLA could fold into.
    step = backend.jit(jax.value_and_grad(
        lambda x, k, g, f=fns[impl]: jnp.sum(f(x, k) * g), argnums=(0, 1)))
    runs[impl] = lambda s=step: jax.block_until_ready(s(xj, kj, gj))

  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
  if up:
    mod = torch.nn.ConvTranspose2d(cin, cout, ks, 2, 1, bias=False,
                                   output_padding=4 - ks)
  else:
    mod = torch.nn.Conv2d(cin, cout, ks, 2, 1, bias=False)

  def torch_step():
    xt.grad = None
    mod.weight.grad = None
    (mod(xt) * gt).sum().backward()

  runs["torch"] = torch_step
  times = {name: [] for name in runs}
  for run in runs.values():
    run()  # Compile / warm up.
  for _ in range(reps):
    for name, run in runs.items():
      # A very slow impl (e.g. XLA:CPU conv transpose at large sizes) is
      # measured once rather than holding up the whole sweep.
      if times[name] and times[name][-1] > slow_ms:
        continue
      times[name].append(_time(run))
  return {name: float(np.median(t)) for name, t in times.items()}


def run_cases(kinds, impls, reps=5, slow_ms=3000.0):
  """Times every case of `kinds`; prints a table row and a JSON line each.

  Args:
    kinds: case kinds to run: up, down (4x4), up3, down3 (3x3).
    impls: UpConv/DownConv implementations to time beside PyTorch.
    reps: timed repetitions (the median is reported).
    slow_ms: stop repeating an implementation once a run exceeds this.
  """
  import jax
  import torch
  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  print(f"jax {jax.__version__} ({jax.default_backend()}), torch "
        f"{torch.__version__}, {threads} threads, XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}, {reps} reps")
  print(f"{'case':34s} {'impl':15s} {'jax ms':>9s} {'torch ms':>9s} "
        f"{'ratio':>6s}")
  for kind, n, h, cin, cout in CASES:
    if kind not in kinds:
      continue
    med = bench_case(kind, n, h, cin, cout, impls, reps, slow_ms)
    ho = _out_size(kind, h)
    label = f"{kind} b{n} {cin}->{cout} {h}->{ho}"
    for impl, ms in med.items():
      if impl == "torch":
        continue
      ratio = med["torch"] / ms
      print(f"{label:34s} {impl:15s} {ms:9.1f} {med['torch']:9.1f} "
            f"{ratio:6.2f}")
      print("JSON " + json.dumps({
          "kind": kind, "kernel_size": _kernel_size(kind), "batch": n,
          "size": h, "cin": cin, "cout": cout,
          "impl": impl, "jax_ms": round(ms, 2),
          "torch_ms": round(med["torch"], 2), "ratio": round(ratio, 3),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}), flush=True)


def flag_sweep(kinds, impls, reps=5, slow_ms=3000.0, rounds=2):
  """Reruns this script per XLA_FLAGS set, rounds interleaved.

  Args:
    kinds: case kinds to run (see `run_cases`).
    impls: implementations to time.
    reps: timed repetitions per run.
    slow_ms: stop repeating an implementation once a run exceeds this.
    rounds: rounds over the flag sets.
  """
  results = {}
  for _ in range(rounds):
    for xla_flags in FLAG_SETS:
      env = dict(os.environ, XLA_FLAGS=xla_flags)
      cmd = [sys.executable, __file__, f"--cases={','.join(kinds)}",
             f"--impls={','.join(impls)}", f"--reps={reps}",
             f"--slow_ms={slow_ms}"]
      out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                           check=True).stdout
      for line in out.splitlines():
        if line.startswith("JSON "):
          r = json.loads(line[5:])
          key = (r["kind"], r["size"], r["cin"], r["cout"], r["impl"])
          results.setdefault(key, {}).setdefault(xla_flags, []).append(
              r["jax_ms"])
  print(f"{'case/impl':40s} " + " ".join(
      f"{f or 'default':>14.14s}" for f in FLAG_SETS))
  for key, per_flag in results.items():
    row = [float(np.median(per_flag.get(f, [np.nan]))) for f in FLAG_SETS]
    print(f"{str(key):40s} " + " ".join(f"{v:14.1f}" for v in row))
    print("JSON " + json.dumps({"case": key, "jax_ms_by_flags": dict(
        zip(FLAG_SETS, row))}))


def _define(fv, argv):
  """The flags (see the module docstring)."""
  del argv
  flags.DEFINE_list("cases", ["up", "down", "up3", "down3"], "Kinds to run: "
                    "up, down (4x4), up3, down3 (3x3).", flag_values=fv)
  flags.DEFINE_list("impls", ["transpose", "subpixel", "matmul", "conv",
                              "space_to_depth"],
                    "Implementations to time.", flag_values=fv)
  flags.DEFINE_integer("reps", 5, "Timed repetitions.", flag_values=fv)
  flags.DEFINE_float("slow_ms", 3000.0, "Stop repeating an impl once a run "
                     "exceeds this.", flag_values=fv)
  flags.DEFINE_bool("flag_sweep", False, "Rerun under several XLA_FLAGS "
                    "settings.", flag_values=fv)
  flags.DEFINE_integer("rounds", 2, "Rounds over the flag sets with "
                       "--flag_sweep.", flag_values=fv)


def _bench(fv):
  if fv.flag_sweep:
    flag_sweep(fv.cases, fv.impls, fv.reps, fv.slow_ms, fv.rounds)
  else:
    run_cases(fv.cases, fv.impls, fv.reps, fv.slow_ms)


def main(argv=None) -> int:
  """The command line (module docstring); returns the exit status."""
  return cli.run(_bench, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
