"""Several processes as one run: 2 processes on 127.0.0.1 (gloo), each with
2 CPU devices, against one process with 1 (conftest's in-process run).

Every run is `python -m jaxgen.main` on the vae :tiny config, as a user or
launch/local.sh would start it (tests/test_train.py checks a batch-norm GAN
on 4 devices against 1).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

# Tests of the shared runs below, which they compare with conftest's
# in-process vae run, go to one xdist worker.
_SHARED = pytest.mark.xdist_group("tiny_vae")

from jaxgen import run as run_lib
from tests import clis
from tests import tiny_run as tiny_run_lib

ROOT = clis.ROOT
# 6 steps, batch 8, eval every 3; one checkpoint (plus the preemption's).
ARGS = (f"--config={ROOT}/configs/vae.py:tiny",
        "--config.train.checkpoint_every=6")
STEPS = 6
TIMEOUT = 600


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(workdir, processes, *extra, devices=2):
  """Starts the run's processes; returns [(Popen, log path)]."""
  os.makedirs(workdir, exist_ok=True)
  args = [sys.executable, "-m", "jaxgen.main", f"--workdir={workdir}", *ARGS,
          *extra]
  if processes > 1:
    args.append(f"--coordinator_address=127.0.0.1:{_free_port()}")
    args.append(f"--num_processes={processes}")
  out = []
  for i in range(processes):
    log = os.path.join(os.path.dirname(workdir),
                       f"{os.path.basename(workdir)}_{i}.log")
    with open(log, "a") as f:
      cmd = args + ([f"--process_id={i}"] if processes > 1 else [])
      out.append((subprocess.Popen(cmd, cwd=ROOT, env=clis.env(devices),
                                   stdout=f, stderr=subprocess.STDOUT), log))
  return out


def _wait(procs, timeout=TIMEOUT):
  """Exit codes; kills everything on timeout."""
  deadline = time.time() + timeout
  try:
    return [p.wait(timeout=max(1, deadline - time.time())) for p, _ in procs]
  finally:
    for p, _ in procs:
      if p.poll() is None:
        p.kill()


def _run(workdir, processes, *extra, devices=2):
  procs = _start(workdir, processes, *extra, devices=devices)
  codes = _wait(procs)
  assert codes == [0] * processes, [open(l).read()[-3000:] for _, l in procs]
  return [open(l).read() for _, l in procs]


def _train_rows(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def _wait_for_step(procs, workdir, step, timeout=TIMEOUT):
  """Blocks until the run has logged `step` (or fails if it died)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if any(r["step"] >= step for r in _train_rows(workdir)):
      return
    assert all(p.poll() is None for p, _ in procs), [
        open(l).read()[-3000:] for _, l in procs]
    time.sleep(0.2)
  raise TimeoutError(f"No step {step} in {workdir}")


def _wait_for_line(procs, text, timeout=TIMEOUT):
  """Blocks until every process has logged `text`."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if all(text in open(l).read() for _, l in procs):
      return
    assert all(p.poll() is None for p, _ in procs), [
        open(l).read()[-3000:] for _, l in procs]
    time.sleep(0.1)
  raise TimeoutError(text)


def _state(workdir):
  """(step, flat state) of the newest checkpoint, restored here."""
  run = run_lib.load(workdir, "latest")
  return run.step, tiny_run_lib.flat_params(run.state)


def _eval_rows(workdir):
  return {r["step"]: {k: v for k, v in r.items() if k.startswith("eval/")}
          for r in _train_rows(workdir) if any(k.startswith("eval/")
                                               for k in r)}


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
  """Workdirs: the pair stopped by SIGTERM to one process, then rerun to the
  end (the pair whose result the tests compare with one process); a copy of
  the preemption checkpoint. (Session scope: xdist may run other modules'
  tests between this module's, which would tear down and rebuild a
  module-scoped fixture.)"""
  tmp = tmp_path_factory.mktemp("multihost")
  out = {"pair": str(tmp / "pair")}
  procs = _start(out["pair"], 2)
  # Once jax.distributed is up (its notifier catches the signal), before or
  # during training: both processes stop at the same step, with a save.
  _wait_for_line(procs, "of 2 (2 local")
  procs[1][0].send_signal(signal.SIGTERM)
  assert _wait(procs) == [0, 0], [open(l).read()[-3000:] for _, l in procs]
  out["preempt_logs"] = [open(l).read() for _, l in procs]
  out["preempt_ckpts"] = sorted(
      int(s) for s in os.listdir(os.path.join(out["pair"], "checkpoints")))
  # A copy of that checkpoint alone, for a single process to continue.
  out["copy"] = str(tmp / "copy")
  os.makedirs(os.path.join(out["copy"], "checkpoints"))
  shutil.copytree(
      os.path.join(out["pair"], "checkpoints",
                   str(out["preempt_ckpts"][-1])),
      os.path.join(out["copy"], "checkpoints", str(out["preempt_ckpts"][-1])))
  out["pair_logs"] = _run(out["pair"], 2)
  return out


@_SHARED
def test_pair_matches_one_process(runs, tiny_run):
  """Same global batches, so the same parameters and eval metrics."""
  assert "Process 1 of 2 (2 local / 4 global devices)" in (
      runs["pair_logs"][1])
  step, pair = _state(runs["pair"])
  single_run = tiny_run("vae").result
  single = tiny_run_lib.flat_params(single_run.state)
  assert step == STEPS and pair.keys() == single.keys() and len(pair) > 4
  for k, v in single.items():
    np.testing.assert_allclose(pair[k], v, rtol=2e-4, atol=2e-5, err_msg=k)
  evals_pair = _eval_rows(runs["pair"])
  evals_single = _eval_rows(single_run.workdir)
  assert sorted(evals_pair) == sorted(evals_single) == [3, 6]
  for s, row in evals_single.items():
    assert row.keys() == evals_pair[s].keys() and "eval/elbo" in row
    for k, v in row.items():
      np.testing.assert_allclose(evals_pair[s][k], v, rtol=1e-4, err_msg=k)


@_SHARED
def test_only_process_0_writes(runs):
  # One metrics row per log step (every 2 steps, and the step the
  # preemption stopped at) and eval, not one per process.
  rows = _train_rows(runs["pair"])
  stop = runs["preempt_ckpts"][-1]
  assert [r["step"] for r in rows if "train/loss" in r] == sorted(
      {2, 4, 6, stop})
  assert os.path.exists(os.path.join(runs["pair"], "loss.png"))
  assert "loss plot: -" in runs["pair_logs"][1]


@_SHARED
def test_sigterm_saves_on_every_process_and_resumes(runs):
  """SIGTERM to one process: both save at the same step and exit 0; the
  rerun resumes there (and ends as one process would:
  test_pair_matches_one_process)."""
  stops = []
  for log in runs["preempt_logs"]:
    line = [l for l in log.splitlines() if "Preempted (SIGTERM) at step" in l]
    assert len(line) == 1, log[-3000:]
    stops.append(int(line[0].split("at step ")[1].split()[0]))
  assert stops[0] == stops[1] and 1 <= stops[0] < STEPS
  # A checkpoint at the stop, though none was scheduled there.
  assert runs["preempt_ckpts"][-1] == stops[0]
  for log in runs["pair_logs"]:
    assert f"Resumed from the checkpoint at step {stops[0]}" in log


@_SHARED
def test_pair_checkpoint_resumes_in_one_process(runs, tiny_run):
  """The pair's checkpoint restores in one process (here, on 1 device) and
  training continues at the next global batch: the result is that of an
  uninterrupted 1-device run."""
  stop = runs["preempt_ckpts"][-1]
  step, restored = _state(runs["copy"])  # In this (1-device) process.
  single = tiny_run_lib.flat_params(tiny_run("vae").result.state)
  # Parameters, optimizer moments and counters: the whole state.
  assert step == stop and restored.keys() == single.keys()
  assert any("opt_state" in k for k in restored)
  logs = _run(runs["copy"], 1, devices=1)
  assert f"Resumed from the checkpoint at step {stop}" in logs[0]
  assert "no input position for process 0 of 1" in logs[0]
  _, final = _state(runs["copy"])
  for k, v in single.items():
    np.testing.assert_allclose(final[k], v, rtol=2e-4, atol=2e-5, err_msg=k)


def test_a_killed_process_stops_the_other(tmp_path):
  timeout = 5
  workdir = str(tmp_path / "killed")
  procs = _start(workdir, 2, "--config.train.num_steps=100000",
                 f"--heartbeat_timeout={timeout}")
  _wait_for_step(procs, workdir, 2)
  procs[1][0].kill()
  start = time.time()
  code = _wait(procs[:1], timeout=6 * timeout)
  assert code[0] != 0
  assert time.time() - start < 6 * timeout
  log = open(procs[0][1]).read()
  assert "another task died" in log or "heartbeat" in log, log[-3000:]


def test_fid_of_the_pair_equals_one_process(tmp_path):
  """Generated images (gan): each process scores its share and the
  features are gathered in order, so FID and KID equal the single-process
  values; process 0 alone writes the reference statistics. (Translations
  take the same path with `translated_images` blocks.)"""
  script = os.path.join(ROOT, "tests", "multihost_fid.py")
  spec = f"{ROOT}/configs/gan.py:tiny"
  out = {}
  for processes in (1, 2):
    cache, result = tmp_path / f"cache{processes}", tmp_path / f"{processes}"
    args = [sys.executable, script, spec, str(cache), str(result)]
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(
        args + ([coordinator, str(processes), str(i)] if processes > 1
                else []), cwd=ROOT, env=clis.env(2 if processes > 1 else 1),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(processes)]
    logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, logs
    out[processes] = json.loads(result.read_text())
    assert len(list(cache.glob("fid_stats/*.npz"))) == len(out[processes]) // 2
  assert out[1].keys() == out[2].keys() and "eval/kid" in "".join(out[1])
  for k, v in out[1].items():
    assert v > 0, (k, v)
    np.testing.assert_allclose(out[2][k], v, rtol=1e-4, err_msg=k)
