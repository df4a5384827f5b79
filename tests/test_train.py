"""The shared loop end to end: main per config, exact resume, sharding,
non-finite losses."""

import glob
import json
import os
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
from tests import tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _config(name, **train_overrides):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py") + ":tiny")
  config.train.update(train_overrides)
  return config


@pytest.mark.parametrize("name", CONFIGS)
def test_main_end_to_end(name, tmp_path):
  """`python -m jaxgen.main` on each config's tiny variant leaves every
  promised output in the workdir."""
  workdir = tmp_path / "run"
  proc = clis.run("jaxgen.main", f"--config={ROOT}/configs/{name}.py:tiny",
                  f"--workdir={workdir}", "--config.train.num_steps=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Done: 4 steps" in proc.stderr
  assert os.path.isdir(workdir / "checkpoints" / "4")
  assert (workdir / "loss.png").stat().st_size > 1000
  assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  pngs = glob.glob(str(workdir / "samples" / "*_0000004.png"))
  assert pngs, os.listdir(workdir / "samples")
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert any(k.startswith("eval/") for r in rows for k in r)
  assert all(np.isfinite(v) for r in rows for v in r.values())
  stored = train.ckpt_lib.stored_config(str(workdir))
  assert stored.train.num_steps == 4
  assert stored.task == _config(name).task


def test_main_unknown_override_is_one_clear_error(tmp_path):
  proc = clis.run("jaxgen.main", f"--config={ROOT}/configs/vae.py:tiny",
                  f"--workdir={tmp_path}", "--config.optim.lrr=1",
                  timeout=300)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert "Unknown config field 'optim.lrr'" in last
  assert "Valid fields of config.optim: b1, b2" in last
  assert not os.listdir(tmp_path)  # Nothing written.


@pytest.mark.parametrize("name", ["vae", "gan"])
def test_resume_is_exact(name, tmp_path):
  """Interrupted at step 3 and resumed == uninterrupted, bit for bit."""
  config = _config(name, num_steps=6, checkpoint_every=100,
                   checkpoint_at_epoch_end=False)
  straight = train.train_and_evaluate(config, str(tmp_path / "a"))
  first = train.train_and_evaluate(config, str(tmp_path / "b"), stop_after=3)
  assert first.step == 3
  assert sorted(os.listdir(tmp_path / "b" / "checkpoints")) == ["3"]
  resumed = train.train_and_evaluate(config, str(tmp_path / "b"))
  assert resumed.step == 6
  a, b = tiny_run.flat_params(straight.state), tiny_run.flat_params(
      resumed.state)
  assert a.keys() == b.keys() and len(a) > 4
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # The history has one row per logged step, none duplicated by the resume.
  steps = [r["step"] for r in map(json.loads, open(tmp_path / "b" /
                                                   "metrics.jsonl"))
           if "train/loss" in r or "train/d_loss" in r]
  assert steps == sorted(set(steps))


@pytest.mark.parametrize("name", ["vae", "gan"])
def test_four_devices_match_one(name, tmp_path):
  """The batch sharded over 4 devices gives the 1-device result."""
  out = {}
  for devices in (1, 4):
    npz = tmp_path / f"{devices}.npz"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "tiny_run.py"),
         f"{ROOT}/configs/{name}.py:tiny", str(tmp_path / f"w{devices}"),
         str(npz)], cwd=ROOT, env=clis.env(devices), capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out[devices] = dict(np.load(npz))
  assert int(out[4]["devices"]) == 4 and int(out[1]["devices"]) == 1
  moved = 0
  for k, v in out[1].items():
    if k == "devices":
      continue
    np.testing.assert_allclose(out[4][k], v, rtol=2e-4, atol=2e-5, err_msg=k)
    moved += 1
  assert moved > 4


class _NanAfterStep3(vae_task.VAETask):
  """A VAE whose loss becomes NaN from step 4 on."""

  def train_step(self, state, batch, rng):
    batch = dict(batch)
    batch["image"] = jnp.where(state.step >= 3, jnp.nan, batch["image"])
    return super().train_step(state, batch, rng)


def test_non_finite_loss_stops_and_keeps_last_good(tmp_path, monkeypatch):
  monkeypatch.setitem(tasks._TASKS, "nan_vae",
                      "tests.test_train:_NanAfterStep3")
  config = _config("vae", num_steps=6, checkpoint_every=2,
                   checkpoint_at_epoch_end=False, log_every=100)
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


@pytest.mark.parametrize("name", CONFIGS)
def test_train_step_compiles_once(name, tmp_path, monkeypatch):
  """Steady-state steps reuse one executable: no retracing per step (e.g.
  from a Python scalar or a changing dtype in the state)."""
  steps = []
  original = train.jit_train_step

  def capture(task, mesh):
    steps.append(original(task, mesh))
    return steps[-1]

  monkeypatch.setattr(train, "jit_train_step", capture)
  config = _config(name, num_steps=5, eval_every=5, sample_every=5,
                   checkpoint_every=2)
  train.train_and_evaluate(config, str(tmp_path))
  assert len(steps) == 1
  assert steps[0]._cache_size() == 1  # pylint: disable=protected-access
