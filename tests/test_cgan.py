"""Conditional GAN task, its datasets and the classifier check.

The end-to-end runs go through jaxgen.train.train_and_evaluate on the tiny
configs; each variant is trained once per session (module fixtures) and
several tests read its outputs, so every model is compiled only once.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from jaxgen import backend
from jaxgen import checkpoint as ckpt_lib
from jaxgen import configlib
from jaxgen import losses
from jaxgen import optim
from jaxgen import train
from jaxgen.data import paired_datasets
from jaxgen.data import pipeline
from jaxgen.evaluation import paired as paired_eval
from jaxgen.tasks import base
from jaxgen.tasks import cgan
from jaxgen.tasks import classifier
from jaxgen.tasks import gan_base
from tests import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _config(variant, **train_overrides):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"cgan.py:{variant}"))
  config.train.update(train_overrides)
  return config


def _history(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


# Losses and optimizers.


def test_d_loss_is_halved_and_g_loss_adds_weighted_l1():
  zeros = jnp.zeros((2, 3, 3))
  # D(real) = D(fake) = 0.5: each BCE term is log 2, halved sum = log 2.
  np.testing.assert_allclose(losses.halved_d_loss(zeros, zeros), np.log(2),
                             rtol=1e-6)
  real, fake = jnp.full((2, 3, 3), 3.0), jnp.full((2, 3, 3), -2.0)
  expected = 0.5 * (np.log1p(np.exp(-3.0)) + np.log1p(np.exp(-2.0)))
  np.testing.assert_allclose(losses.halved_d_loss(real, fake), expected, rtol=1e-6)
  np.testing.assert_allclose(losses.halved_d_loss(jnp.ones(4), jnp.zeros(4),
                                            "lsgan"), 0.0)
  np.testing.assert_allclose(losses.halved_d_loss(jnp.zeros(4), jnp.zeros(4),
                                            "hinge"), 1.0)
  image = jnp.zeros((2, 4, 4, 3))
  total, adv, l1 = losses.adversarial_l1_loss(zeros, image + 0.1, image, "bce", 100.0)
  np.testing.assert_allclose(adv, np.log(2), rtol=1e-6)
  np.testing.assert_allclose(l1, 0.1, rtol=1e-6)
  np.testing.assert_allclose(total, np.log(2) + 100 * 0.1, rtol=1e-6)
  assert total.dtype == jnp.float32


def test_plateau_schedule_reduces_only_without_improvement():
  """Window 2, patience 1, factor 0.5, floor 0.1: the scale halves at the
  end of each 2-step window whose mean loss is not below (1 - rtol) times
  the best window mean so far, and only then."""
  cfg = configlib.adam(lr=0.1, schedule="plateau", plateau_factor=0.5,
                       plateau_patience=1, plateau_window=2,
                       plateau_cooldown=0, plateau_min_scale=0.1,
                       plateau_rtol=1e-3)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.ones(3)}
  tx = optim.make_optimizer(cfg, 100)
  step = jax.jit(lambda ts, v: gan_base.apply_updates(ts, grads, v, None))
  ts = base.TrainState.create(apply_fn=None, params=params, tx=tx)
  windows = [  # (losses of the window's two steps, scale after it)
      ((4.0, 4.0), 1.0),       # First window: the best so far.
      ((3.0, 3.0), 1.0),       # Improved.
      ((2.0, 4.0), 0.5),       # Mean 3: no better -> halved.
      ((2.0, 2.0), 0.5),       # Improved.
      ((1.0, 3.5), 0.25),      # One low value, mean 2.25: worse -> halved.
      ((1.99, 1.99), 0.25),    # Improved by more than rtol (0.5 %).
      ((1.989, 1.989), 0.125),  # Lower, but by less than rtol -> halved.
      ((5.0, 5.0), 0.1),       # Worse: halved, but not below the floor.
      ((1.0, 1.0), 0.1),       # Improved.
      ((0.5, 9.0), 0.1),       # Worse: stays at the floor.
  ]
  got, want, moves = [], [], []
  for window, scale_after in windows:
    for i, loss in enumerate(window):
      before = ts.params["w"]
      ts = step(ts, loss)
      got.append(float(ts.opt_state[1].scale))
      # Mid-window the scale is the previous window's.
      want.append(scale_after if i == len(window) - 1 else (
          want[-1] if want else 1.0))
      moves.append(float(before[0] - ts.params["w"][0]))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # The scale multiplies Adam's update, which is lr = 0.1 for constant
  # gradients.
  np.testing.assert_allclose(moves, 0.1 * np.array(want), rtol=1e-4)

  # The other schedules ignore the value.
  plain = optim.make_optimizer(configlib.adam(lr=0.1, schedule="linear"), 10)
  opt_state = plain.init(params)
  for value in (1.0, 100.0):
    updates, _ = plain.update(grads, opt_state, params, value=value)
    np.testing.assert_allclose(updates["w"], -0.1, rtol=1e-4)


# Data.


def _write_pair_folder(root, names, size=40, seed=0, split="train",
                       photo_mode="RGB"):
  """Asymmetric random photos with sketch = their luma (so aligned)."""
  rng = np.random.default_rng(seed)
  for name in names:
    photo = rng.integers(0, 256, (size, size, 3)).astype(np.float32)
    photo[:, : size // 3] *= 0.3  # Dark left third: flips are visible.
    sketch = np.round(photo @ _LUMA).astype(np.uint8)
    for kind, arr in (("photos", photo.astype(np.uint8)),
                      ("sketches", sketch)):
      os.makedirs(os.path.join(root, split, kind), exist_ok=True)
      im = Image.fromarray(arr)
      if kind == "photos":
        im = im.convert(photo_mode)
      im.save(os.path.join(root, split, kind, f"{name}.png"))


def _folder_config(root, **overrides):
  config = _config("")  # The real-data default: paired_folder.
  config.data.update(root=str(root), crop_size=32, load_size=40, **overrides)
  return config


def test_training_batches_keep_sketch_and_photo_aligned(tmp_path):
  _write_pair_folder(tmp_path, [f"p{i}" for i in range(8)])
  _write_pair_folder(tmp_path, ["v0", "v1"], seed=1, split="val")
  config = _folder_config(tmp_path)
  ds = pipeline.build(config.data, "train")
  batches = pipeline.train_iterator(ds, 4, seed=0, num_threads=0)
  flipped = 0
  for _ in range(6):
    b = next(batches)
    assert b["sketch"].shape == (4, 32, 32, 1) and b["photo"].shape == (
        4, 32, 32, 3)
    assert b["photo"].min() >= -1 and b["photo"].max() <= 1
    luma = b["photo"] @ _LUMA
    np.testing.assert_allclose(b["sketch"][..., 0], luma, atol=3 / 255)
    # The dark third says which way the pair was flipped.
    left = b["photo"][:, :, :8].mean(axis=(1, 2, 3))
    right = b["photo"][:, :, -8:].mean(axis=(1, 2, 3))
    flipped += int(np.sum(left > right))
  assert 0 < flipped < 24  # Both orientations occurred.
  # The loop's test split is val, deterministic, at the crop size.
  test = pipeline.build(config.data, "test")
  assert test.augment is None and len(test.source) == 2
  e1, e2 = test.source[0], pipeline.build(config.data, "test").source[0]
  np.testing.assert_array_equal(e1["photo"], e2["photo"])
  assert e1["photo"].shape == (32, 32, 3) and e1["photo"].min() >= -1


def test_bad_folders_give_clear_errors_through_the_config(tmp_path):
  config = _folder_config(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"config.data.root=.*"
                     r"Person Face Sketches.*cgan.py:demo"):
    pipeline.build(config.data, "train")
  config.data.root = ""
  with pytest.raises(FileNotFoundError, match="config.data.root is not set"):
    pipeline.build(config.data, "train")

  missing = tmp_path / "missing"
  _write_pair_folder(missing, ["a", "b", "c"])
  os.remove(missing / "train" / "photos" / "b.png")
  with pytest.raises(ValueError, match=r"config.data.root=.*1 sketch\(es\) "
                     r"without a photo \(e.g. \['b'\]\)"):
    pipeline.build(_folder_config(missing).data, "train")

  grey = tmp_path / "grey"
  _write_pair_folder(grey, ["a", "b"], photo_mode="L")
  with pytest.raises(ValueError, match="expected photos with 3 channel"):
    pipeline.build(_folder_config(grey, photo_channels=3).data, "train")

  mixed = tmp_path / "mixed"
  _write_pair_folder(mixed, ["a", "b"])
  _write_pair_folder(mixed, ["c"], photo_mode="L")
  _write_pair_folder(mixed, ["v"], split="val")
  ds = pipeline.build(_folder_config(mixed).data, "train")
  with pytest.raises(ValueError, match=r"c.png: this photo has 1 channel"):
    ds.source[2]  # pylint: disable=pointless-statement

  empty = tmp_path / "empty"
  _write_pair_folder(empty, ["a", "b"])
  for kind in ("photos", "sketches"):
    os.makedirs(empty / "val" / kind)
  with pytest.raises(ValueError, match=r"config.data.root=.*empty"):
    pipeline.build(_folder_config(empty).data, "test")

  faces = _config("tiny")
  faces.data.num_test = 0
  with pytest.raises(ValueError, match="config.data.num_test=0"):
    pipeline.build(faces.data, "test")


def test_procedural_face_labels_and_sketchified_class_folders(tmp_path):
  config = _config("labels,tiny")
  ds = pipeline.build(config.data, "test")
  labels = [int(ds.source[i]["label"]) for i in range(len(ds.source))]
  assert set(labels) <= {0, 1} and ds.info["classes"] == (
      "dark_hair", "light_hair")
  elem = ds.source[0]
  assert elem["sketch"].shape == (16, 16, 1) and elem["photo"].shape == (
      16, 16, 3)
  # Photos in class sub-folders, sketched on the fly, hash-split.
  for cls, value in (("cat", 40), ("dog", 200)):
    os.makedirs(tmp_path / cls)
    for i in range(5):
      Image.fromarray(np.full((24, 24, 3), value + i, np.uint8)).save(
          tmp_path / cls / f"{i}.png")
  data = paired_datasets.data_config("sketchified_folder", 16, str(tmp_path),
                                     num_classes=2, val_fraction=0.3)
  train_ds = pipeline.build(data, "train")
  test_ds = pipeline.build(data, "test")
  assert len(train_ds.source) + len(test_ds.source) == 10
  for ds in (train_ds, test_ds):
    for i in range(len(ds.source)):
      e = ds.source[i]
      # Dark photos are cats (0), bright ones dogs (1).
      assert int(e["label"]) == int(e["photo"].mean() > 0.5)
  data.num_classes = 3
  with pytest.raises(ValueError, match=r"found 2 class sub-folder.*"
                     r"num_classes=3"):
    pipeline.build(data, "train")


# End to end (train_and_evaluate), one run per variant.


@pytest.fixture(scope="session")
def unet_run(tmp_path_factory):
  """cgan.py:tiny, evaluated every step on the whole (8-pair) val split."""
  config = _config("tiny", num_steps=30, eval_every=1, eval_batches=-1,
                   sample_every=30, checkpoint_every=30, log_every=10)
  # A tiny net learns visibly in 30 steps only with a larger, constant lr.
  config.g_optim.update(lr=2e-3, schedule="constant")
  config.d_optim.update(lr=5e-4, schedule="constant")
  workdir = str(tmp_path_factory.mktemp("unet"))
  return train.train_and_evaluate(config, workdir)


@pytest.fixture(scope="session")
def labels_run(tmp_path_factory):
  """cgan.py:labels,tiny with the plateau schedule."""
  config = _config("labels,tiny")
  config.g_optim.update(schedule="plateau", plateau_window=2,
                        plateau_patience=0)
  return train.train_and_evaluate(config,
                                  str(tmp_path_factory.mktemp("labels")))


def test_val_l1_decreases_and_outputs_are_complete(unet_run):
  rows = _history(unet_run.workdir)
  l1 = [r["eval/l1"] for r in rows if "eval/l1" in r]
  assert len(l1) == 30
  assert l1[-1] < 0.9 * l1[0], l1
  assert np.mean(np.diff(l1) < 0) > 0.8, l1  # A steady decrease.
  last = [r for r in rows if "eval/ssim" in r][-1]
  assert all(np.isfinite(last[k]) for k in ("eval/ssim", "eval/psnr"))
  train_rows = [r for r in rows if "train/g_l1" in r]
  assert train_rows[-1]["train/g_loss"] > 0
  # Grid: 4 rows of (sketch | generated | real), sketches as RGB grey.
  grid = np.asarray(Image.open(os.path.join(
      unet_run.outputs["samples"], "translation_0000030.png")))
  assert grid.shape == (4 * 18 + 2, 3 * 18 + 2, 3)
  sketch_col = grid[2:-2, 2:18].astype(int)
  assert np.all(sketch_col[..., 0] == sketch_col[..., 1])
  assert np.abs(grid[2:18, 38:54].astype(int)[..., 0] -
                grid[2:18, 38:54].astype(int)[..., 2]).max() > 10  # Colour.


def test_eval_metrics_match_independent_references(unet_run):
  """The loop's in-jit l1/psnr/ssim equal plain numpy formulas (SSIM: an
  explicit Gaussian-window implementation) on the generated images."""
  config = ml_collections.ConfigDict(json.load(open(os.path.join(
      unet_run.workdir, "config.json"))))
  task = cgan.CGANTask(config)
  test_ds = pipeline.build(config.data, "test")
  batch = pipeline.first_batch(test_ds, 4)
  batch.pop("mask")
  task.init_state(jax.random.key(0), batch)  # Builds the modules.
  got = jax.jit(task.eval_step)(unet_run.state, batch, jax.random.key(0))
  fake = np.asarray(jax.jit(task.translate)(unet_run.state, batch["sketch"]),
                    np.float64)
  a, b = (fake + 1) / 2, (np.asarray(batch["photo"], np.float64) + 1) / 2
  mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
  want = {"l1": np.mean(np.abs(a - b), axis=(1, 2, 3)),
          "psnr": -10 * np.log10(mse),
          "ssim": [reference.ssim_numpy(a[i], b[i]) for i in range(len(a))]}
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=2e-5,
                               err_msg=name)
  # The public evaluation functions agree as well.
  np.testing.assert_allclose(paired_eval.ssim(fake, batch["photo"], (-1, 1)),
                             want["ssim"], atol=2e-5)
  # A trained generator on 16 px faces: clearly related, far from perfect.
  assert 0.1 < np.mean(want["ssim"]) < 0.99 and np.all(mse > 0)


def test_labels_variant_end_to_end(labels_run):
  assert labels_run.step == 6
  assert all(np.isfinite(v) for v in labels_run.eval_metrics.values())
  samples = os.listdir(labels_run.outputs["samples"])
  assert "by_label_0000006.png" in samples
  grid = np.asarray(Image.open(os.path.join(labels_run.outputs["samples"],
                                            "by_label_0000006.png")))
  assert grid.shape[1] == 4 * 18 + 2  # sketch | label 0 | label 1 | real
  # The logged learning rate is the plateau stage's: lr times its scale,
  # which window 2 and patience 0 have lowered within the 6 steps.
  scale = float(labels_run.state.g.opt_state[1].scale)
  assert scale < 1
  assert labels_run.train_metrics["train/g_lr"] == pytest.approx(
      _config("labels,tiny").g_optim.lr * scale)


def test_encoder_variant_with_two_generator_steps_per_d_step(tmp_path):
  config = _config("encoder,tiny")
  config.gan.g_steps = 2
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result.step == 6
  assert int(result.state.g.step) == 6 and int(result.state.d.step) == 3
  assert all(np.isfinite(v) for v in result.eval_metrics.values())
  assert "code" in result.state.g.params


def test_classifier_on_real_vs_generated(labels_run, tmp_path, capsys):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", "classifier.py:tiny"))
  # Enough steps at a larger constant lr for the tiny CNN to learn the hair
  # colour; evaluated once, on the whole (8-face) test split.
  config.optim.update(lr=3e-3, schedule="constant")
  config.train.update(num_steps=30, log_every=10, eval_every=30,
                      eval_batches=-1, sample_every=30, checkpoint_every=30)
  clf = train.train_and_evaluate(config, str(tmp_path / "cls"))

  # The same faces are the labelled cGAN's test split.
  cgan_config = ckpt_lib.stored_config(labels_run.workdir)
  test_ds = pipeline.build(cgan_config.data, "test")
  batch = pipeline.first_batch(test_ds, 8)
  batch.pop("mask")
  labels = np.asarray(batch["label"])
  assert labels.tolist() == [0, 1, 1, 1, 0, 0, 0, 0]  # Majority: 5 / 8.
  clf_task = classifier.ClassifierTask(config)
  clf_task.init_state(jax.random.key(0), batch)  # Builds the modules.
  g_task = cgan.CGANTask(cgan_config)
  g_task.init_state(jax.random.key(0), batch)
  predict = backend.jit(clf_task.predict)
  translate = backend.jit(g_task.translate)

  def accuracy(images, target):
    return np.mean(np.argmax(predict(clf.state, images), -1) == target)

  acc_real = accuracy(batch["photo"], labels)
  assert acc_real > 5 / 8  # Better than always answering "dark hair".
  assert clf.eval_metrics["eval/accuracy"] == pytest.approx(acc_real)
  def generated(label):
    return translate(labels_run.state, batch["sketch"], label,
                     jax.random.key(0))

  want = {"acc_real": acc_real,
          "acc_generated": accuracy(generated(labels), labels),
          "acc_requested": np.mean([
              accuracy(generated(np.full_like(labels, c)), c)
              for c in (0, 1)])}
  capsys.readouterr()  # Only the command's JSON below.
  # --which latest: the final state compared above.
  assert classifier.main(["--classifier_workdir", clf.workdir,
                          "--cgan_workdir", labels_run.workdir,
                          "--batch_size", "8", "--which", "latest"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["n"] == 8
  for key, value in want.items():
    assert out[key] == pytest.approx(value), key
  plain = _unlabelled(tmp_path)
  with pytest.raises(ValueError, match="not label-conditioned"):
    classifier.evaluate_generated(clf.workdir, plain)
  # Through the command line: one "Error:" line and exit 1; bad flags: 2.
  assert classifier.main(["--classifier_workdir", clf.workdir,
                          "--cgan_workdir", plain]) == 1
  err = capsys.readouterr().err
  assert "Error: " in err and "not label-conditioned" in err
  assert "Traceback" not in err
  assert classifier.main(["--classifier_workdir", clf.workdir]) == 2
  assert "cgan_workdir" in capsys.readouterr().err


def _unlabelled(tmp_path):
  """A workdir whose stored config is an unlabelled cGAN (no training)."""
  workdir = str(tmp_path / "plain")
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(1, {"x": jnp.zeros(1)}, {}, _config("tiny"))
  ckpt.wait()
  ckpt.close()
  return workdir
