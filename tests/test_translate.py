"""Translating with trained pix2pix and CycleGAN runs, from Python and the
command line."""

import os

import jax
import numpy as np
from PIL import Image
import pytest

from jaxgen import configlib
from jaxgen import image_files
from jaxgen import run as run_lib
from jaxgen import tasks as tasks_lib
from jaxgen import translate
from jaxgen.data import sketchify
from jaxgen.tasks import base
from tests import clis

# name -> (size (w, h), PIL mode); bad.png is not an image, notes.txt is
# not an image file at all.
INPUTS = {"a.jpg": ((30, 40), "RGB"), "sub/b.png": ((20, 20), "L"),
          "sub/c.png": ((25, 20), "RGBA"), "sub/d.png": ((16, 16), "I;16")}


@pytest.fixture(scope="session")
def cgan_workdir(tiny_run):
  """cgan.py:tiny (16 px, sketch -> photo), trained once per test process
  (tests/conftest.py); only read here."""
  return tiny_run("cgan").result.workdir


@pytest.fixture(scope="session")
def cyclegan_workdir(tiny_run):
  """cyclegan.py:tiny (16 px, photo <-> sketch), as `cgan_workdir`."""
  return tiny_run("cyclegan").result.workdir


def _write_inputs(folder):
  rng = np.random.default_rng(0)
  for name, ((w, h), mode) in INPUTS.items():
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "I;16":
      Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16)
                      ).save(path)
      continue
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    Image.fromarray(rng.integers(0, 256, (h, w) + channels, np.uint8)
                    ).save(path)
  with open(os.path.join(folder, "bad.png"), "wb") as f:
    f.write(b"not a png")
  with open(os.path.join(folder, "notes.txt"), "w") as f:
    f.write("not an image")
  return folder


def _outputs(folder):
  found = {}
  for root, _, names in os.walk(folder):
    for name in names:
      with Image.open(os.path.join(root, name)) as im:
        rel = os.path.relpath(os.path.join(root, name), folder)
        found[rel] = (im.size, im.mode)
  return found


@pytest.mark.xdist_group("tiny_cgan")
def test_translate_images_is_the_model_on_prepared_inputs(cgan_workdir):
  r = run_lib.load(cgan_workdir)
  assert r.directions == [""] and r.input_shape() == (16, 16, 1)
  rng = np.random.default_rng(1)
  grey = rng.integers(0, 256, (16, 16, 1), np.uint8)
  colour = rng.integers(0, 256, (24, 40, 3), np.uint8)
  out = translate.translate_images(r, [grey, colour], batch_size=4)
  want = base.to_unit(r.translate(grey[None] / 127.5 - 1.0))
  np.testing.assert_array_equal(out[0], image_files.to_uint8(want[0]))
  # Colour in: its luma, the whole image resized to 16 x 16.
  luma = image_files.to_uint8(base.to_channels(
      colour.astype(np.float32) / 255, 1))
  np.testing.assert_allclose(
      translate.prepare(colour, (16, 16, 1)),
      image_files.resize(luma, 16, 16) / 127.5 - 1.0, atol=1e-6)
  assert out[1].shape == (16, 16, 3) and out[1].dtype == np.uint8
  kept = translate.translate_images(r, [colour], keep_size=True)
  assert kept[0].shape == (24, 40, 3)


@pytest.mark.xdist_group("tiny_cgan")
def test_translate_folder_from_python(cgan_workdir, tmp_path):
  inputs = _write_inputs(str(tmp_path / "in"))
  out = str(tmp_path / "out")
  found = translate.translate_path(cgan_workdir, inputs, out, batch_size=3)
  assert [os.path.basename(p) for p, _ in found["skipped"]] == ["bad.png"]
  assert _outputs(out) == {
      "a.png": ((16, 16), "RGB"), "sub/b.png": ((16, 16), "RGB"),
      "sub/c.png": ((16, 16), "RGB"), "sub/d.png": ((16, 16), "RGB")}
  translate.translate_path(cgan_workdir, inputs, out, keep_size=True)
  assert _outputs(out) == {
      name.replace(".jpg", ".png"): (size, "RGB")
      for name, (size, _) in INPUTS.items()}
  # Inputs untouched.
  assert sorted(os.listdir(inputs)) == ["a.jpg", "bad.png", "notes.txt",
                                        "sub"]


@pytest.mark.xdist_group("tiny_cgan")
def test_translate_cli_cgan(cgan_workdir, tmp_path):
  inputs = _write_inputs(str(tmp_path / "in"))
  out = tmp_path / "out"
  proc = clis.run("jaxgen.translate", f"--workdir={cgan_workdir}",
                  f"--input={inputs}", f"--out={out}", "--keep_size",
                  "--batch_size=2")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Wrote 4 image(s)" in proc.stdout
  assert "bad.png" in proc.stderr and "Skipped 1 unreadable" in proc.stderr
  assert "translate: 5/5" in proc.stderr
  assert _outputs(out)["a.png"] == ((30, 40), "RGB")


def test_input_folders_skip_hidden_files_folders_and_outputs(tmp_path):
  folder = tmp_path / "in"
  for sub in ("sub", ".ipynb_checkpoints", "out"):
    (folder / sub).mkdir(parents=True)
  img = Image.fromarray(np.zeros((4, 4), np.uint8))
  for name in ("a.png", "sub/c.jpg", ".ipynb_checkpoints/a-checkpoint.png",
               "out/d.png", "e.bmp", "z.png"):
    img.save(folder / name)
  (folder / "._a.png").write_bytes(b"not an image")
  found = image_files.list_images(str(folder), exclude=[str(folder / "out")])
  # Sorted by path (a subfolder's files before a later name at the top), in
  # the order the data pipeline lists the same folder.
  assert [i.name for i in found] == ["a", "e", os.path.join("sub", "c"), "z"]
  assert [i.path for i in found] == sketchify.list_images(
      str(folder), exclude=[str(folder / "out")])


@pytest.mark.xdist_group("tiny_cgan")
def test_translate_errors(cgan_workdir, tmp_path, capsys):
  inputs = _write_inputs(str(tmp_path / "in"))
  before = sorted(os.listdir(inputs))

  def cli(*args):
    code = translate.main([f"--workdir={cgan_workdir}", *args])
    return code, capsys.readouterr().err

  code, err = cli(f"--input={inputs}", f"--out={inputs}")
  assert code == 1 and "would overwrite the input" in err
  assert sorted(os.listdir(inputs)) == before
  code, err = cli(f"--input={inputs}/bad.png", f"--out={tmp_path}/o")
  assert code == 1 and "cannot identify image file" in err
  code, err = cli(f"--input={inputs}", f"--out={tmp_path}/o",
                  "--direction=AtoB")
  assert code == 1 and "only one way" in err
  code, err = cli(f"--input={inputs}", f"--out={tmp_path}/o", "--label=1")
  assert code == 1 and "not label-conditioned" in err
  Image.new("L", (8, 8)).save(os.path.join(inputs, "a.png"))
  code, err = cli(f"--input={inputs}", f"--out={tmp_path}/o")
  assert code == 1 and "would both be written" in err
  os.makedirs(tmp_path / "empty")
  code, err = cli(f"--input={tmp_path}/empty", f"--out={tmp_path}/o")
  assert code == 1 and "No images" in err
  assert not os.path.exists(tmp_path / "o")


def test_label_conditioned_pix2pix_needs_a_label():
  config = configlib.load_config_file(
      os.path.join(clis.ROOT, "configs", "cgan.py:labels,tiny"))
  task = tasks_lib.get_task(config)
  r = run_lib.Run("labels_dir", config, task,
                  task.init_state(jax.random.key(0)), 0, "latest", {})
  image = np.zeros((20, 20, 3), np.uint8)
  with pytest.raises(run_lib.RunError, match=r"label in \[0, 2\)"):
    translate.translate_images(r, [image])
  with pytest.raises(run_lib.RunError, match=r"got 2"):
    translate.translate_images(r, [image], label=2)
  by_label = [translate.translate_images(r, [image], label=c)[0]
              for c in (0, 1)]
  assert by_label[0].shape == (16, 16, 3)
  assert not np.array_equal(by_label[0], by_label[1])


@pytest.mark.xdist_group("tiny_cyclegan")
def test_cyclegan_both_directions(cyclegan_workdir, tmp_path):
  r = run_lib.load(cyclegan_workdir)
  assert r.directions == ["BtoA", "AtoB"] and r.direction() == "BtoA"
  inputs = _write_inputs(str(tmp_path / "in"))
  found = translate.translate_path(r, inputs, str(tmp_path / "photos"))
  assert found["direction"] == "BtoA"
  assert set(_outputs(tmp_path / "photos").values()) == {((16, 16), "RGB")}
  proc = clis.run("jaxgen.translate", f"--workdir={cyclegan_workdir}",
                  f"--input={inputs}", f"--out={tmp_path / 'sketches'}",
                  "--direction=AtoB", "--keep_size")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "AtoB" in proc.stdout
  assert _outputs(tmp_path / "sketches") == {
      name.replace(".jpg", ".png"): (size, "L")
      for name, (size, _) in INPUTS.items()}
  # translate_images follows the direction asked, not the run's default:
  # AtoB gives a sketch (one channel), BtoA a photo.
  image = np.full((16, 16, 3), 128, np.uint8)
  a_to_b = translate.translate_images(r, [image], "AtoB")[0]
  b_to_a = translate.translate_images(r, [image], "BtoA")[0]
  assert a_to_b.shape == (16, 16, 1) and b_to_a.shape == (16, 16, 3)
