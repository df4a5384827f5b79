"""The shared loop end to end: a run per config, the command line, exact
resume, sharding, non-finite losses."""

import glob
import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import configlib
from jaxgen import tasks
from jaxgen import train
from jaxgen.tasks import vae as vae_task
from tests import clis
from tests import tiny_run as tiny_run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _config(name, **train_overrides):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py") + ":tiny")
  config.train.update(train_overrides)
  return config


def _grouped(names):
  """Parameters that share conftest's tiny runs on one xdist worker."""
  return [pytest.param(n, marks=pytest.mark.xdist_group(f"tiny_{n}"))
          for n in names]


@pytest.mark.parametrize("name", _grouped(CONFIGS))
def test_tiny_run_end_to_end(name, tiny_run):
  """Each config's tiny variant leaves every promised output in the
  workdir, and its steady-state steps reuse one executable: no retracing
  per step (e.g. from a Python scalar or a changing dtype in the state),
  with evaluations, samples and checkpoints in between."""
  run = tiny_run(name)
  tc = _config(name).train
  last = tc.num_steps

  def due(every):
    return {s for s in range(1, last + 1) if s % every == 0 or s == last}

  workdir = pathlib.Path(run.result.workdir)
  assert run.result.step == last
  assert len(run.train_steps) == 1
  # pylint: disable-next=protected-access
  assert run.train_steps[0]._cache_size() == 1
  # Saved every checkpoint_every steps and at the end, not at the epoch
  # ends (off by default); the last `keep` kept (and the best, if older).
  saved = sorted(due(tc.checkpoint_every))
  kept = set(map(int, os.listdir(workdir / "checkpoints")))
  assert set(saved[-tc.keep:]) <= kept <= set(saved), (kept, saved)
  assert (workdir / "loss.png").stat().st_size > 1000
  assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  for step in due(tc.sample_every):
    pngs = glob.glob(str(workdir / "samples" / f"*_{step:07d}.png"))
    assert pngs, os.listdir(workdir / "samples")
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert {r["step"] for r in rows if any(k.startswith("eval/") for k in r)
          } == due(tc.eval_every)
  assert {r["step"] for r in rows if any(k.startswith("train/") for k in r)
          } == due(tc.log_every)
  assert all(np.isfinite(v) for r in rows for v in r.values())
  assert run.result.eval_metrics and run.result.train_metrics
  stored = train.ckpt_lib.stored_config(str(workdir))
  assert stored.train.num_steps == last
  assert stored.task == _config(name).task


def test_main_end_to_end(tmp_path):
  """`python -m jaxgen.main` trains with command-line overrides applied,
  says where everything is, and stores the overridden config."""
  workdir = tmp_path / "run"
  proc = clis.run("jaxgen.main", f"--config={ROOT}/configs/vae.py:tiny",
                  f"--workdir={workdir}", "--config.train.num_steps=4",
                  "--config.train.checkpoint_at_epoch_end=True")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Done: 4 steps" in proc.stderr
  assert f"checkpoints: {workdir}/checkpoints" in proc.stderr
  # Every 3 steps, at the end and, as asked, at each epoch end (every 2).
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "3", "4"]
  assert (workdir / "loss.png").stat().st_size > 1000
  assert glob.glob(str(workdir / "samples" / "*_0000004.png"))
  stored = train.ckpt_lib.stored_config(str(workdir))
  assert stored.train.num_steps == 4
  assert stored.train.checkpoint_at_epoch_end
  assert stored.task == "vae"


def test_main_unknown_override_is_one_clear_error(tmp_path):
  proc = clis.run("jaxgen.main", f"--config={ROOT}/configs/vae.py:tiny",
                  f"--workdir={tmp_path}", "--config.optim.lrr=1",
                  timeout=300)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert "Unknown config field 'optim.lrr'" in last
  assert "Valid fields of config.optim: b1, b2" in last
  assert not os.listdir(tmp_path)  # Nothing written.


@pytest.mark.parametrize("name", _grouped(["vae", "gan"]))
def test_resume_is_exact(name, tiny_run, tmp_path):
  """Interrupted at step 3 and resumed == uninterrupted, bit for bit."""
  straight = tiny_run(name).result
  # Only the stop saves a checkpoint; nothing that affects training differs
  # from the straight run's config.
  config = _config(name, checkpoint_every=100)
  first = train.train_and_evaluate(config, str(tmp_path), stop_after=3)
  assert first.step == 3
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
  resumed = train.train_and_evaluate(config, str(tmp_path))
  assert resumed.step == 6
  a, b = tiny_run_lib.flat_params(straight.state), tiny_run_lib.flat_params(
      resumed.state)
  assert a.keys() == b.keys() and len(a) > 4
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # The history has one row per logged step (every 2 and at the stop),
  # none duplicated by the resume.
  steps = [r["step"] for r in map(json.loads, open(tmp_path /
                                                   "metrics.jsonl"))
           if "train/loss" in r or "train/d_loss" in r]
  assert steps == [2, 3, 4, 6]


@pytest.mark.xdist_group("tiny_gan")
def test_four_devices_match_one(tiny_run, tmp_path):
  """The batch sharded over 4 devices gives the 1-device result (the gan,
  whose batch norm statistics must span the devices; tests/test_multihost.py
  compares the vae on 2 processes x 2 devices with 1 device)."""
  npz = tmp_path / "gan.npz"
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tests", "tiny_run.py"),
       f"{ROOT}/configs/gan.py:tiny", str(tmp_path / "gan"), str(npz)],
      cwd=ROOT, env=clis.env(4), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  four = dict(np.load(npz))
  one = tiny_run_lib.flat_params(tiny_run("gan").result.state)
  assert int(four.pop("devices")) == 4
  assert four.keys() == one.keys() and len(one) > 4
  for k, v in one.items():
    np.testing.assert_allclose(four[k], v, rtol=2e-4, atol=2e-5, err_msg=k)


class _NanAfterStep3(vae_task.VAETask):
  """A VAE whose loss becomes NaN from step 4 on."""

  def train_step(self, state, batch, rng):
    batch = dict(batch)
    batch["image"] = jnp.where(state.step >= 3, jnp.nan, batch["image"])
    return super().train_step(state, batch, rng)


def test_non_finite_loss_stops_and_keeps_last_good(tmp_path, monkeypatch):
  monkeypatch.setitem(tasks._TASKS, "nan_vae",
                      "tests.test_train:_NanAfterStep3")
  config = _config("vae", num_steps=6, checkpoint_every=2, log_every=100)
  config.task = "nan_vae"
  with pytest.raises(train.NonFiniteLossError,
                     match=r"at step 4.*last good checkpoint \(step 2\)"):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]


def test_batch_not_divisible_by_devices_is_clear():
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  from jaxgen import parallel  # pylint: disable=g-import-not-at-top
  mesh = SimpleNamespace(devices=np.empty(4))
  with pytest.raises(ValueError, match="not divisible by the 4 devices.*"
                     "batch_size=8"):
    parallel.check_batch_size(10, mesh)
  parallel.check_batch_size(12, mesh)
