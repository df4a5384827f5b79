"""launch/compare.py (jaxgen/compare.py) on the shared tiny runs."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import compare as compare_lib
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen.data import pipeline
from jaxgen.tasks import base
from tests import clis

ROOT = clis.ROOT


def _by_hand_l1(workdir):
  """Mean |G(sketch) - photo| over the cGAN's test split, on [0, 1]."""
  r = run_lib.load(workdir, "latest")
  test = pipeline.build(r.config.data, "test")
  batch = pipeline.first_batch(test, len(test.source))
  out = base.to_unit(r.translate(batch["sketch"]))
  return float(np.mean(np.abs(np.asarray(out) -
                              np.asarray(base.to_unit(batch["photo"])))))


@pytest.mark.xdist_group("tiny_cgan")
def test_groups_of_a_generative_and_a_translation_run(tiny_run, tmp_path,
                                                      capsys):
  gan = tiny_run("gan").result.workdir
  cgan = tiny_run("cgan").result.workdir
  out = tmp_path / "cmp"
  # The gan run twice in one group: a spread of exactly 0.
  cli = clis.launch_module("compare")
  status = cli.main([f"--workdirs={gan},{cgan},{gan}", "--group=g,p,g",
                     f"--out={out}", "--no_fid", "--num=16", "--batch_size=8"])
  assert status == 0
  table = capsys.readouterr().out
  summary = json.loads((out / "summary.json").read_text())
  runs = summary["runs"]
  assert [r["task"] for r in runs] == ["gan", "cgan", "gan"]
  assert runs[0]["metrics"] == runs[2]["metrics"]
  swd = runs[0]["metrics"]["swd"]
  assert swd > 0 and "fid" not in runs[0]["metrics"]
  l1 = runs[1]["metrics"]["l1"]
  assert l1 == pytest.approx(_by_hand_l1(cgan), rel=1e-5)
  assert {"psnr", "ssim", "l1_std"} <= set(runs[1]["metrics"])
  g, p = summary["groups"]["g"], summary["groups"]["p"]
  assert g["n"] == 2 and p["n"] == 1
  assert g["metrics"]["swd"] == {"mean": pytest.approx(swd), "std": 0.0,
                                 "n": 2}
  assert p["metrics"]["l1"] == {"mean": pytest.approx(l1), "std": None,
                                "n": 1}
  assert summary["settings"]["fid"] is False
  lines = table.splitlines()
  header = lines[0].split(" | ")
  assert header[:4] == ["| group", "runs", "swd", "l1"]
  assert "l1_std" not in lines[0]
  assert lines[2].startswith(f"| g | 2 | {swd:.4g} ± 0 | - |")
  assert lines[3].startswith(f"| p | 1 | - | {l1:.4g} |")
  assert (out / "samples_" f"{os.path.basename(gan)}.png").exists()
  assert summary["table"] in table


@pytest.mark.xdist_group("tiny_cgan")
def test_truncation_samples_a_stored_run_with_truncated_codes(tiny_run,
                                                              tmp_path):
  """--truncation: the run is restored with gan.truncation set (its stored
  config unchanged) and scored on images of truncated codes; runs without
  latent codes and bad bounds are one RunError each."""
  gan = tiny_run("gan").result.workdir
  plain = run_lib.load(gan, "latest")
  assert plain.config.gan.truncation == 0
  cut = run_lib.load(gan, "latest", truncation=0.5)
  assert cut.config.gan.truncation == 0.5
  assert run_lib.load(gan, "latest").config.gan.truncation == 0
  key = jax.random.key(3)
  z = cut.task.sampling_z(key, 8)
  assert float(jnp.abs(z).max()) <= 0.5
  want = base.to_unit(plain.task.gen.apply(
      plain.task.eval_state(plain.state).g.variables(), z, train=False))
  np.testing.assert_allclose(cut.generate(key, 8), want, atol=1e-5)
  assert np.abs(np.asarray(plain.generate(key, 8)) - want).max() > 1e-3
  result = compare_lib.compare([gan, gan], ["g", "g"], fid=False, num=16,
                               batch_size=8, truncation=0.5)
  assert result["settings"]["truncation"] == 0.5
  untruncated = compare_lib.compare([gan], fid=False, num=16, batch_size=8)
  assert (result["runs"][0]["metrics"]["swd"]
          != untruncated["runs"][0]["metrics"]["swd"])
  with pytest.raises(run_lib.RunError, match=r"\(gan, siamese_gan\)"):
    run_lib.load(tiny_run("cgan").result.workdir, truncation=0.5)
  for bad in (-1.0, float("nan"), float("inf")):
    with pytest.raises(run_lib.RunError, match="gan.truncation"):
      run_lib.load(gan, truncation=bad)
  status = clis.launch_module("compare").main(
      [f"--workdirs={tiny_run('cgan').result.workdir}", "--truncation=0.5",
       f"--out={tmp_path}", "--no_fid"])
  assert status == 1
  assert sample.main([f"--workdir={gan}", f"--out={tmp_path / 's'}",
                      "--num=4", "--truncation=0.5"]) == 0
  assert len(os.listdir(tmp_path / "s" / "samples")) == 4


@pytest.mark.xdist_group("tiny_cgan")
def test_select_scores_the_best_of_k_samples(tiny_run, tmp_path, capsys):
  """--select: the scored images are sample.draw's best-of-k, whose SWD
  against the test images is computed as for plain samples; a translation
  run has no samples to pick from."""
  gan = tiny_run("gan").result.workdir
  result = compare_lib.compare([gan], fid=False, num=16, batch_size=8,
                               select="real", candidates=3)
  assert result["settings"]["select"] == "real"
  assert result["settings"]["candidates"] == 3
  r = run_lib.load(gan, "latest")
  picked = sample.draw(r, 16, r.config.seed, 8, None, "real", 3)
  test = pipeline.build(r.config.data, "test")
  want = compare_lib.swd(picked, compare_lib.held_out_images(test))
  assert result["runs"][0]["metrics"]["swd"] == pytest.approx(want, rel=1e-5)
  plain = compare_lib.compare([gan], fid=False, num=16, batch_size=8)
  assert plain["runs"][0]["metrics"]["swd"] != pytest.approx(want, rel=1e-3)
  status = clis.launch_module("compare").main(
      [f"--workdirs={tiny_run('cgan').result.workdir}", "--select=real",
       f"--out={tmp_path}", "--no_fid"])
  assert status == 1
  assert "draws none" in capsys.readouterr().err


def test_usage_errors_and_the_former_name():
  cli = clis.launch_module("compare")
  assert cli.main(["--workdirs=a,b", "--group=x", "--out=o"]) == 2
  with pytest.raises(ValueError, match="1 group labels for 2 workdirs"):
    compare_lib.compare(["a", "b"], ["x"])
  help_text = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "compare_siamese.py"),
       "--help"], capture_output=True, text=True, check=True).stdout
  assert "--group" in help_text and "--workdirs" in help_text
