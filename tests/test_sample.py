"""Sampling a trained run from Python and from the command line."""

import os

import jax
import numpy as np
from PIL import Image
import pytest

from jaxgen import cli
from jaxgen import configlib
from jaxgen import image_files
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen import tasks as tasks_lib
from jaxgen import train
from tests import clis
from tests import fakes


def _tiny_vae(tmp_path_factory, latent_res):
  config = configlib.load_config_file(
      os.path.join(clis.ROOT, "configs", "vae.py:tiny"))
  config.model.latent_res = latent_res
  config.train.update(num_steps=2, eval_every=2, sample_every=2,
                      checkpoint_every=2, log_every=2)
  workdir = str(tmp_path_factory.mktemp("vae"))
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="session")
def vae_workdir(tmp_path_factory):
  """vae.py:tiny trained for 2 steps."""
  return _tiny_vae(tmp_path_factory, 0)


@pytest.fixture(scope="session")
def spatial_vae_workdir(tmp_path_factory):
  """The same with a 4x4 latent map (model.latent_res)."""
  return _tiny_vae(tmp_path_factory, 4)


VAES = pytest.mark.parametrize("vae", ["vae_workdir", "spatial_vae_workdir"])


@pytest.fixture(scope="session")
def scans(tmp_path_factory):
  """Fake signature scans in two signer folders, and one truncated file."""
  folder = str(tmp_path_factory.mktemp("scans"))
  fakes.write_signature_folder(folder, num_signers=2, per_signer=2,
                               size=(60, 100))
  fakes.write_truncated_png(os.path.join(folder, "bad.png"))
  return folder


def _size(path):
  with Image.open(path) as im:
    return im.size, im.mode


@VAES
def test_samples_from_python(vae, request, tmp_path):
  r = run_lib.load(request.getfixturevalue(vae))
  images = sample.draw(r, 10, seed=1, batch_size=4)
  assert images.shape == (10, 16, 16, 1)
  assert 0 <= images.min() and images.max() <= 1
  np.testing.assert_array_equal(images, sample.draw(r, 10, seed=1,
                                                    batch_size=4))
  assert not np.array_equal(images, sample.draw(r, 10, seed=2, batch_size=4))

  found = sample.sample_run(r, str(tmp_path), num=10, seed=1, batch_size=4,
                            interpolate=True, walk_steps=5)
  assert len(found["written"]) == 1 + 10 + 1 and found["step"] == 2
  written = np.asarray(Image.open(tmp_path / "samples" / "0003.png"))
  np.testing.assert_array_equal(written,
                                image_files.to_uint8(images[3])[..., 0])
  # Two walks of 5 (10 // 5), one per row of 16 px tiles padded by 2.
  assert _size(tmp_path / "interpolation.png") == ((2 + 18 * 5, 2 + 18 * 2),
                                                   "L")
  assert _size(tmp_path / "samples.png")[0] == (2 + 18 * 8, 2 + 18 * 2)


@VAES
def test_walks_and_reconstructions_from_python(vae, request, scans, tmp_path):
  r = run_lib.load(request.getfixturevalue(vae))
  inputs = image_files.list_images(scans)
  images, kept, skipped = sample.read_scans(r, inputs)
  assert images.shape == (4, 16, 16, 1) and len(kept) == 4
  assert [os.path.basename(p) for p, _ in skipped] == ["bad.png"]
  points = sample.encode(r, images, batch_size=3)
  assert points.shape == (4,) + r.task.latent_shape
  assert r.task.latent_shape == ((4,) if vae == "vae_workdir" else (4, 4, 4))
  recon = sample.reconstruct(r, images, batch_size=3)
  walks = sample.latent_walks(r, points, steps=4)
  assert walks.shape == (12, 16, 16, 1)
  # Each walk starts and ends at a reconstruction.
  np.testing.assert_allclose(walks[0], recon[0], atol=1e-5)
  np.testing.assert_allclose(walks[3], recon[1], atol=1e-5)
  np.testing.assert_allclose(walks[11], recon[3], atol=1e-5)

  found = sample.sample_run(r, str(tmp_path), num=0, interpolate=True,
                            reconstruct_path=scans, walk_steps=4)
  assert len(found["skipped"]) == 1
  for name in ("signer_00/00", "signer_01/01"):
    assert _size(tmp_path / "reconstruction" / f"{name}.png") == ((16, 16),
                                                                  "L")
  out = np.asarray(Image.open(tmp_path / "reconstruction" / "signer_00" /
                              "01.png"))
  np.testing.assert_array_equal(out, image_files.to_uint8(recon[1])[..., 0])
  # Input and reconstruction side by side: 8 tiles, one row.
  assert _size(tmp_path / "reconstruction.png")[0] == (2 + 18 * 8, 2 + 18)
  assert not os.path.exists(tmp_path / "samples")


def test_sample_cli(vae_workdir, scans, tmp_path):
  out = tmp_path / "out"
  proc = clis.run("jaxgen.sample", f"--workdir={vae_workdir}", "--num=8",
                  f"--out={out}", "--interpolate", f"--reconstruct={scans}",
                  "--which=latest", "--step=2")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Wrote 15 file(s)" in proc.stdout
  assert "Skipped 1 unreadable file(s)" in proc.stderr
  assert sorted(os.listdir(out)) == ["interpolation.png", "reconstruction",
                                     "reconstruction.png", "samples",
                                     "samples.png"]
  assert len(os.listdir(out / "samples")) == 8


def test_sample_errors(vae_workdir, scans, tmp_path, capsys):
  assert sample.main([f"--workdir={vae_workdir}", f"--out={tmp_path}",
                      f"--reconstruct={scans}/bad.png"]) == 1
  assert "truncated" in capsys.readouterr().err
  assert not os.listdir(tmp_path)
  # A translation run can neither sample nor reconstruct.
  config = configlib.load_config_file(
      os.path.join(clis.ROOT, "configs", "cgan.py:tiny"))
  task = tasks_lib.get_task(config)
  cgan = run_lib.Run("cgan_dir", config, task,
                     task.init_state(jax.random.key(0)), 0, "latest", {})
  with pytest.raises(cli.UserError, match="python -m jaxgen.translate"):
    sample.sample_run(cgan, str(tmp_path))
  with pytest.raises(cli.UserError, match="need a VAE run"):
    sample.sample_run(cgan, str(tmp_path), interpolate=True)
