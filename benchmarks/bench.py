r"""Train-step benchmark of every task, with a PyTorch reference beside it.

  python benchmarks/bench.py                  # every config, one table
  python benchmarks/bench.py --cases "cgan.py:bench,res=128;vae.py:bench" --steps 20
  python benchmarks/bench.py --dtype bfloat16 --batch 1,16   # on a GPU

Cases come from configs/: every config file is run with its `BENCH_ARGS`
(a module-level tuple of variants, e.g. pix2pix at 128 and 256 px) or, when
it has none, with its `bench` variant (the full-size model on the offline
generated data). A new task is therefore picked up as soon as its config
file exists; one whose config has no `bench` option is listed as an error
naming the fix.

For each case (each in its own process, so that peak memory is its own):
  compile_s     trace + lower + XLA compile of the loop's jitted train step
                (jaxgen.train.jit_train_step, the exact function training
                runs: rng folding, data sharding, state donation).
  step_ms       median wall time of the step over --steps steps after
                --warmup steps, batch already on the device.
  img_s         batch / step_ms.
  peak_mb       peak device memory (GPU/TPU allocator statistics) or, on CPU,
                the process's peak resident memory before torch is loaded
                (TensorFlow, imported by clu, is part of that).
  xla_mb        (JSON only) the memory XLA plans for the step itself.
  input_img_s   the grain input pipeline alone (same threads, prefetch and
                augmentation as training), from a fresh iterator.
  loop_img_s    next(iterator) + host->device transfer + step, dispatched
                as the train loop does; near img_s when input and transfers
                are hidden behind compute.
  torch_ms      the same train step in PyTorch (benchmarks/torch_ref), timed
                interleaved with jaxgen's, step by step, in the same process.
  ratio         torch_ms / step_ms: jaxgen's speed relative to PyTorch's
                (> 1 means jaxgen is faster).
  gflop         XLA's FLOP count of one step; with a known peak (or
                --peak_tflops) also the model FLOP utilisation `mfu`.

Prints a table at the end and one "BENCH {json}" line per case as it goes.
"""

import glob
import json
import os
import resource
import subprocess
import sys
import time

from absl import flags
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from jaxgen import cli  # pylint: disable=g-import-not-at-top

# Dense bf16 peak TFLOP/s by device kind, for the MFU column (vendor figures,
# no sparsity). Other devices need --peak_tflops.
PEAK_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.0,
    "NVIDIA H100": 989.0,
    "NVIDIA H200": 989.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
}

# (column, width, decimals); None decimals = text.
COLUMNS = [("case", 26, None), ("batch", 5, 0), ("compile_s", 9, 1),
           ("step_ms", 9, 1), ("img_s", 8, 1), ("torch_ms", 9, 1),
           ("ratio", 6, 2), ("peak_mb", 8, 0), ("input_img_s", 11, 0),
           ("loop_img_s", 10, 1), ("gflop", 8, 1)]


def discover_cases(config_dir=os.path.join(ROOT, "configs")):
  """Every "file.py:variant" the benchmark runs by default.

  Args:
    config_dir: folder of config files.

  Returns:
    A list of specs such as "cgan.py:bench,res=128", sorted by file.
  """
  from jaxgen import configlib  # pylint: disable=g-import-not-at-top
  specs = []
  for path in sorted(glob.glob(os.path.join(config_dir, "*.py"))):
    module = configlib.load_config_module(path)
    if not hasattr(module, "get_config"):
      continue
    for arg in getattr(module, "BENCH_ARGS", ("bench",)):
      specs.append(f"{os.path.basename(path)}:{arg}")
  return specs


def load_case(spec, batch_size=0, dtype="", config_dir=None):
  """The config of a case, with the benchmark's batch size and dtype.

  Args:
    spec: "file.py:variant" relative to `config_dir`, or a path.
    batch_size: > 0 replaces `config.train.batch_size`.
    dtype: "" keeps the config's; else sets `config.model.dtype` (configs
      without that field compute in float32 and are left as they are).
    config_dir: folder of config files (default: the repo's configs/).

  Returns:
    The ml_collections config.
  """
  from jaxgen import configlib  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    path = os.path.join(config_dir or os.path.join(ROOT, "configs"), path)
  config = configlib.load_config_file(f"{path}:{arg}" if arg else path)
  with config.unlocked():
    if batch_size > 0:
      config.train.batch_size = batch_size
    if dtype and "dtype" in config.model:
      config.model.dtype = dtype
  return config


def interleaved_medians(cases, reps: int, calls: int = 1):
  """{key: median ms per call} of `reps` interleaved runs of each case.

  Round-robin, so that a shared machine's load hits every case alike.

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


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device_peak_mb(device):
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return None


def _flops(compiled):
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def _xla_mb(compiled):
  """Device memory XLA plans for the step: arguments, outputs and temps,
  minus outputs that alias donated arguments."""
  try:
    m = compiled.memory_analysis()
    total = (m.argument_size_in_bytes + m.output_size_in_bytes +
             m.temp_size_in_bytes - m.alias_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None
  return total / 2**20


def measure_input(ds, config, num_batches):
  """Images/s of the training input pipeline alone, from a fresh iterator."""
  from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top
  tc = config.train
  it = pipeline.train_iterator(ds, tc.batch_size, config.seed,
                               tc.data_threads, tc.prefetch)
  next(it)  # Starts the reader threads.
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  return num_batches * tc.batch_size / (time.perf_counter() - start)


def run_case(spec, steps=10, warmup=2, batch_size=0, dtype="",
             with_torch=True, peak_tflops=0.0, input_batches=0):
  """Benchmarks one case in this process.

  Args:
    spec: "file.py:variant" (see `load_case`).
    steps: timed steps (the median is reported).
    warmup: untimed steps after compilation.
    batch_size: > 0 overrides the config's batch size.
    dtype: "" or a `model.dtype` value.
    with_torch: also time the PyTorch reference when one exists.
    peak_tflops: device peak for the MFU column (0: from PEAK_TFLOPS).
    input_batches: batches for the input-pipeline rate (0: max(steps, 5)).

  Returns:
    A dict with the columns described in the module docstring.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxgen import parallel  # pylint: disable=g-import-not-at-top
  from jaxgen import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from jaxgen import train  # pylint: disable=g-import-not-at-top
  from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top

  config = load_case(spec, batch_size, dtype)
  tc = config.train
  device = jax.devices()[0]
  row = {"case": spec, "task": config.task, "batch": tc.batch_size,
         "backend": jax.default_backend(), "device": device.device_kind,
         "dtype": str(config.model.get("dtype", "float32")),
         "jax": jax.__version__}

  ds = pipeline.build(config.data, "train")
  # As the loop does: epoch-based configs (CycleGAN) learn their length in
  # steps, which their LR schedules need, from the data.
  config = train.with_data_facts(config, len(ds.source))
  tc = config.train
  # As in the loop: init from the first examples, steps on iterator batches
  # (which may differ in size, e.g. pix2pix's random crops).
  example = pipeline.first_batch(ds, tc.batch_size)
  example.pop("mask")
  host = next(pipeline.train_iterator(ds, tc.batch_size, config.seed, 0))
  row["res"] = int(next(v.shape[1] for v in host.values() if np.ndim(v) == 4))
  row["input_img_s"] = measure_input(ds, config,
                                     input_batches or max(steps, 5))

  mesh = parallel.make_mesh()
  parallel.check_batch_size(tc.batch_size, mesh)
  task = tasks_lib.get_task(config)
  state = parallel.replicate(task.init_state(jax.random.key(0), example),
                             mesh)
  batch = parallel.shard_batch(host, mesh)
  rng = parallel.replicate(jax.random.key(1), mesh)
  p_train = train.jit_train_step(task, mesh)
  start = time.perf_counter()
  compiled = p_train.lower(state, batch, rng).compile()
  row["compile_s"] = time.perf_counter() - start
  flops = _flops(compiled)
  row["xla_mb"] = _xla_mb(compiled)

  def jax_step():
    nonlocal state
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))

  for _ in range(warmup):
    jax_step()
  row["peak_mb"] = _device_peak_mb(device) or _peak_rss_mb()

  runners = {"jax": jax_step}
  if with_torch:
    from benchmarks import torch_ref  # pylint: disable=g-import-not-at-top
    if torch_ref.has_reference(config.task):
      import torch  # pylint: disable=g-import-not-at-top
      torch.set_num_threads(len(os.sched_getaffinity(0)))
      ref = torch_ref.make(config, {k: np.asarray(v) for k, v in
                                    host.items()})
      for _ in range(warmup):
        ref.step()
      runners["torch"] = ref.step
  medians = interleaved_medians(runners, steps)
  row["step_ms"] = medians["jax"]
  row["img_s"] = tc.batch_size / row["step_ms"] * 1e3
  if "torch" in medians:
    row["torch_ms"] = medians["torch"]
    row["ratio"] = row["torch_ms"] / row["step_ms"]

  # The loop's own pattern: fetch, transfer, dispatch; block only at the end.
  it = pipeline.train_iterator(ds, tc.batch_size, config.seed,
                               tc.data_threads, tc.prefetch)
  next(it)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, parallel.shard_batch(next(it), mesh),
                              rng)
  jax.block_until_ready((state, metrics))
  row["loop_img_s"] = steps * tc.batch_size / (time.perf_counter() - start)

  if flops:
    row["gflop"] = flops / 1e9
    peak = peak_tflops or PEAK_TFLOPS.get(device.device_kind, 0.0)
    if peak:
      row["mfu"] = flops / (row["step_ms"] / 1e3) / (peak * 1e12)
  return row


def _child(spec, batch_size, steps, warmup, dtype, with_torch, peak_tflops):
  """Runs one case in a fresh process; returns its row (or an error row)."""
  cmd = [sys.executable, os.path.abspath(__file__), "--inline",
         f"--cases={spec}", f"--steps={steps}", f"--warmup={warmup}",
         f"--batch={batch_size}", f"--dtype={dtype}",
         f"--peak_tflops={peak_tflops}"]
  if not with_torch:
    cmd.append("--no_torch")
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("BENCH "):
      return json.loads(line[len("BENCH "):])
  tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
  return {"case": spec, "batch": batch_size, "error": tail}


def run_cases(specs, batch_sizes=(0,), steps=10, warmup=2, dtype="",
              with_torch=True, peak_tflops=0.0, inline=False, json_path=""):
  """Benchmarks every case at every batch size, printing a line for each.

  Args:
    specs: "file.py:variant" specs (see `load_case`).
    batch_sizes: batch sizes to run each case at (0: the config's own).
    steps: timed steps (the median is reported).
    warmup: untimed steps after compilation.
    dtype: "" or a `model.dtype` value.
    with_torch: also time the PyTorch reference when one exists.
    peak_tflops: device peak for the MFU column (0: from PEAK_TFLOPS).
    inline: run the cases in this process rather than each in its own.
    json_path: if set, also append the rows to this file as JSON lines.

  Returns:
    The rows (see `run_case`); a failed case is a row with an "error".
  """
  rows = []
  for spec in specs:
    for b in batch_sizes:
      if inline:
        try:
          row = run_case(spec, steps, warmup, b, dtype, with_torch,
                         peak_tflops)
        except Exception as e:  # pylint: disable=broad-except
          row = {"case": spec, "batch": b,
                 "error": f"{type(e).__name__}: {e}".splitlines()[0]}
      else:
        row = _child(spec, b, steps, warmup, dtype, with_torch, peak_tflops)
      rows.append(row)
      print("BENCH " + json.dumps(row, sort_keys=True), flush=True)
      if json_path:
        with open(json_path, "a") as f:
          f.write(json.dumps(row, sort_keys=True) + "\n")
  return rows


def format_table(rows):
  """The rows as a fixed-width text table ("n/a" for missing values)."""
  def cell(value, width, decimals):
    if value is None:
      return "n/a".rjust(width)
    if decimals is None:
      return str(value).ljust(width)
    return f"{value:{width}.{decimals}f}"

  lines = [" ".join(name.ljust(w) if d is None else name.rjust(w)
                    for name, w, d in COLUMNS)]
  for row in rows:
    if "error" in row:
      lines.append(f"{row['case']:<26} {row.get('batch', ''):>5} "
                   f"ERROR: {row['error']}")
      continue
    lines.append(" ".join(cell(row.get(name), w, d) for name, w, d in COLUMNS))
  return "\n".join(lines)


def _define(fv, argv):
  """The flags (see the module docstring)."""
  del argv
  flags.DEFINE_string("cases", "", "';'-separated file.py:variant specs "
                      "(variants contain commas); default: every config.",
                      flag_values=fv)
  flags.DEFINE_list("batch", ["0"], "Comma-separated batch sizes (0: each "
                    "config's own).", flag_values=fv)
  flags.DEFINE_integer("steps", 10, "Timed steps.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.",
                       flag_values=fv)
  flags.DEFINE_string("dtype", "", "model.dtype for configs that have one "
                      "(float32, bfloat16; default: the config's).",
                      flag_values=fv)
  flags.DEFINE_float("peak_tflops", 0.0, "Device peak TFLOP/s for the MFU "
                     "(0: from the device kind, when known).", flag_values=fv)
  flags.DEFINE_bool("no_torch", False, "Skip the PyTorch reference.",
                    flag_values=fv)
  flags.DEFINE_bool("inline", False, "Run every case in this process.",
                    flag_values=fv)
  flags.DEFINE_string("json", "", "Also append rows to this file.",
                      flag_values=fv)
  flags.register_validator(
      "batch", lambda sizes: all(s.strip().isdigit() for s in sizes),
      "--batch must be comma-separated integers >= 0", flag_values=fv)


def _bench(fv):
  """Runs the cases of the flags and prints the table."""
  specs = [s for s in fv.cases.split(";") if s] or discover_cases()
  rows = run_cases(specs, [int(b) for b in fv.batch], fv.steps, fv.warmup,
                   fv.dtype, not fv.no_torch, fv.peak_tflops, fv.inline,
                   fv.json)
  print()
  print(format_table(rows))
  failed = sum("error" in r for r in rows)
  if failed:
    raise cli.UserError(f"{failed} of {len(rows)} case(s) failed (their "
                        "ERROR rows above say why).")


def main(argv=None) -> int:
  """The command line (see the module docstring).

  Args:
    argv: arguments without the program name (default: sys.argv[1:]).

  Returns:
    The exit status: 1 when a case failed.
  """
  return cli.run(_bench, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
