"""CycleGAN: channels, losses, the image pool, schedules, data, runs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from jaxgen import checkpoint as ckpt_lib
from jaxgen import configlib
from jaxgen import optim
from jaxgen import train
from jaxgen.data import pipeline
from jaxgen.data import unpaired
from jaxgen.models import layers
from jaxgen.models import resnet
from jaxgen.tasks import cyclegan
from jaxgen.tasks import image_pool


def _tiny(**overrides):
  config = configlib.load_config_file("configs/cyclegan.py:tiny")
  for key, value in overrides.items():
    node = config
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return config


# Channels.


def test_to_channels_luma_and_repeat():
  rgb = jnp.asarray([[[[1.0, 0.0, 0.0], [0.2, 0.2, 0.2]]]])
  grey = cyclegan.to_channels(rgb, 1)
  np.testing.assert_allclose(grey[..., 0], [[[0.299, 0.2]]], rtol=1e-6)
  back = cyclegan.to_channels(grey, 3)
  assert back.shape == (1, 1, 2, 3)
  np.testing.assert_allclose(back[0, 0, 1], [0.2] * 3, rtol=1e-6)
  assert cyclegan.to_channels(rgb, 3) is rgb


def test_translate_converts_input_channels_both_ways():
  config = _tiny()
  task = cyclegan.CycleGANTask(config)
  state = task.init_state(jax.random.key(0))
  res = config.data.crop_size
  grey_photo = jnp.zeros((1, res, res, 1))       # A given as grey.
  rgb_sketch = jnp.zeros((1, res, res, 3))       # B given as colour.
  assert task.translate(state, grey_photo, "AtoB").shape == (1, res, res, 1)
  assert task.translate(state, rgb_sketch, "BtoA").shape == (1, res, res, 3)
  with pytest.raises(ValueError, match="direction"):
    task.translate(state, grey_photo, "sideways")


# Losses.


def test_identity_maps_give_zero_cycle_and_identity_loss(monkeypatch):
  """With G_AB, G_BA = channel conversion, grey-valued photos cycle exactly."""
  task = cyclegan.CycleGANTask(_tiny())
  out = {"ab": task.cb, "ba": task.ca}
  monkeypatch.setattr(task, "_g", lambda params, name, x:
                      cyclegan.to_channels(x, out[name]))
  monkeypatch.setattr(task, "_d", lambda params, name, x: jnp.ones(
      x.shape[:3]))
  rng = np.random.default_rng(0)
  grey = rng.uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
  a = jnp.asarray(np.repeat(grey, 3, -1))  # R = G = B.
  b = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32))
  _, (metrics, _, _) = task._g_loss(None, None, a, b)  # pylint: disable=protected-access
  for name in ("cycle_a", "cycle_b", "idt_a", "idt_b"):
    np.testing.assert_allclose(metrics[name], 0.0, atol=1e-6)
  # D(x) = 1 everywhere: the LSGAN generator terms vanish too.
  np.testing.assert_allclose(metrics["g_loss"], 0.0, atol=1e-6)
  # A colourful photo cannot survive the grey sketch domain.
  colour = a.at[..., 0].set(1.0)
  _, (metrics, _, _) = task._g_loss(None, None, colour, b)  # pylint: disable=protected-access
  assert metrics["cycle_a"] > 0.1


# The image pool.


def test_pool_fills_then_swaps_about_half_deterministically():
  pool = image_pool.init_pool(4, (1, 1, 1))
  images = jnp.arange(1.0, 5.0).reshape(4, 1, 1, 1)
  query = jax.jit(image_pool.query)  # One program for the 200 calls below.
  pool, out = query(pool, images, jax.random.key(0))
  np.testing.assert_array_equal(out, images)  # Filling: returned as is.
  np.testing.assert_array_equal(pool.images, images)
  assert int(pool.count) == 4
  swapped, total = 0, 0
  p = pool
  for i in range(200):
    new = jnp.full((2, 1, 1, 1), 100.0 + i)
    p, got = query(p, new, jax.random.key(i + 1))
    swapped += int(np.sum(np.asarray(got) != np.asarray(new)))
    total += 2
  assert 0.4 < swapped / total < 0.6


def test_pool_swap_returns_old_image_and_stores_new():
  pool = image_pool.init_pool(2, (1, 1, 1))
  pool, _ = image_pool.query(pool, jnp.asarray([1.0, 2.0]).reshape(2, 1, 1, 1),
                             jax.random.key(0))
  p, out = image_pool.query(pool, jnp.full((1, 1, 1, 1), 9.0),
                            jax.random.key(3), swap_prob=1.0)
  assert float(out[0, 0, 0, 0]) in (1.0, 2.0)
  stored = sorted(np.asarray(p.images).ravel().tolist())
  assert 9.0 in stored and len(stored) == 2
  p, out = image_pool.query(pool, jnp.full((1, 1, 1, 1), 9.0),
                            jax.random.key(3), swap_prob=0.0)
  assert float(out[0, 0, 0, 0]) == 9.0
  np.testing.assert_array_equal(p.images, pool.images)


def test_empty_pool_is_identity():
  pool = image_pool.init_pool(0, (2, 2, 1))
  images = jnp.ones((3, 2, 2, 1))
  new, out = image_pool.query(pool, images, jax.random.key(0))
  assert out is images and new is pool


# Schedule.


def test_epoch_linear_schedule_at_the_boundaries():
  """Constant for n_epochs, then lr * (1 - k / (n_decay + 1)) per epoch."""
  cfg = configlib.adam(lr=2e-4, schedule="epoch_linear", n_epochs=100,
                       n_epochs_decay=100)
  steps_per_epoch = 10
  sched = optim.make_schedule(cfg, 200 * steps_per_epoch)
  at = lambda epoch, i=0: float(sched(epoch * steps_per_epoch + i))
  np.testing.assert_allclose(at(0), 2e-4)
  np.testing.assert_allclose(at(99, 9), 2e-4)          # Last constant step.
  np.testing.assert_allclose(at(100), 2e-4 * (1 - 1 / 101), rtol=1e-6)
  np.testing.assert_allclose(at(150), 2e-4 * (1 - 51 / 101), rtol=1e-6)
  np.testing.assert_allclose(at(199, 9), 2e-4 / 101, rtol=1e-6)  # Last.
  np.testing.assert_allclose(at(200), 0.0, atol=1e-12)


def test_epochs_become_steps_from_the_data_size():
  config = configlib.load_config_file("configs/cyclegan.py:epochs=3")
  config.train.batch_size = 4
  out = train.with_data_facts(config, num_train=50)
  assert out.train.steps_per_epoch == 12
  assert out.train.num_steps == 6 * 12  # 3 constant + 3 decay epochs.
  assert config.train.num_steps == 0    # The input is not modified.


# Layers.


def test_reflect_pad_matches_numpy():
  x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
  want = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
  np.testing.assert_array_equal(resnet.reflect_pad(jnp.asarray(x), 3), want)
  # Reflection excludes the edge pixel (PyTorch ReflectionPad2d, not
  # "symmetric"): row -1 is row 1.
  np.testing.assert_array_equal(want[:, 2, 3:-3], x[:, 1])


def test_instance_norm_matches_numpy_per_image_and_channel():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, (2, 6, 5, 4)).astype(np.float32)
  norm = layers.make_norm("instance", train=True)()
  y, params = norm.init_with_output(jax.random.key(0), jnp.asarray(x))
  assert not jax.tree_util.tree_leaves(params)  # No affine parameters.
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = x.var(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)


def test_resnet_generator_shapes_and_range():
  gen = resnet.ResnetGenerator(out_channels=1, width=4, num_blocks=2)
  x = jnp.zeros((2, 16, 16, 3))
  y, variables = gen.init_with_output(jax.random.key(0), x)
  assert y.shape == (2, 16, 16, 1) and y.dtype == jnp.float32
  assert "batch_stats" not in variables
  assert set(variables["params"]) == {"stem", "down0", "down1", "block0",
                                      "block1", "up1", "up0", "head"}
  assert variables["params"]["down0"]["kernel"].shape == (3, 3, 4, 8)
  with pytest.raises(ValueError, match="divisible by 4"):
    gen.init(jax.random.key(0), jnp.zeros((1, 18, 18, 3)))


# Data.


def _write_images(folder, names, mode, size=(24, 20), seed=0):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  channels = {"L": 1, "RGB": 3}[mode]
  for name in names:
    a = rng.integers(0, 256, (size[1], size[0], channels), np.uint8)
    Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(
        os.path.join(folder, name + ".png"))


def _folder_config(**data):
  config = _tiny()
  config.data.update(name="unpaired_folders", **data)
  return config


def test_two_folders_of_any_mode_are_converted(tmp_path):
  # Grey "photos" and colour "sketches": converted, never an error.
  _write_images(str(tmp_path / "photos"), [f"p{i}" for i in range(10)], "L")
  _write_images(str(tmp_path / "sketches"), [f"s{i}" for i in range(4)],
                "RGB")
  config = _folder_config(a_root=str(tmp_path / "photos"),
                          b_root=str(tmp_path / "sketches"),
                          paired_eval=False, val_fraction=0.25)
  ds = pipeline.build(config.data, "train")
  assert len(ds.source) == 8  # The larger domain: 10 - 2 held out.
  elem = ds.augment(ds.source[0], np.random.default_rng(0))
  assert elem["a"].shape == (16, 16, 3) and elem["b"].shape == (16, 16, 1)
  assert elem["a"].min() >= -1 and elem["a"].max() <= 1
  # Grey photos become R = G = B.
  np.testing.assert_array_equal(elem["a"][..., 0], elem["a"][..., 2])
  test = pipeline.build(config.data, "test")
  assert len(test.source) == 2
  assert test.source[0]["b"].shape == (16, 16, 1)


def test_smaller_domain_is_drawn_at_random(tmp_path):
  _write_images(str(tmp_path / "a"), [f"p{i}" for i in range(12)], "RGB")
  _write_images(str(tmp_path / "b"), [f"s{i}" for i in range(3)], "L",
                seed=1)
  config = _folder_config(a_root=str(tmp_path / "a"),
                          b_root=str(tmp_path / "b"), val_fraction=0.0,
                          flip=False, load_size=16)
  ds = pipeline.build(config.data, "train")
  elem = ds.source[5]
  draws = {ds.augment(elem, np.random.default_rng(s))["b"].tobytes()
           for s in range(30)}
  assert len(draws) == 3  # Every B image shows up, whatever the A index.
  again = ds.augment(elem, np.random.default_rng(7))
  np.testing.assert_array_equal(
      again["b"], ds.augment(elem, np.random.default_rng(7))["b"])


def test_paired_layout_trains_unpaired_and_tests_paired(tmp_path):
  for split, n in (("train", 5), ("val", 2)):
    names = [f"{split}{i}" for i in range(n)]
    _write_images(str(tmp_path / split / "photos"), names, "RGB")
    _write_images(str(tmp_path / split / "sketches"), names, "L")
  config = _folder_config(root=str(tmp_path))
  assert config.data.paired_eval
  assert len(pipeline.build(config.data, "train").source) == 5
  test = pipeline.build(config.data, "test")
  assert len(test.source) == 2
  photo = np.asarray(Image.open(tmp_path / "val" / "photos" / "val1.png")
                     .resize((16, 16), Image.Resampling.BICUBIC),
                     np.float32) / 255 * 2 - 1
  np.testing.assert_allclose(test.source[1]["a"], photo, atol=1e-5)


def test_empty_or_missing_folders_are_one_clear_error(tmp_path):
  os.makedirs(tmp_path / "empty")
  _write_images(str(tmp_path / "b"), ["s0", "s1"], "L")
  config = _folder_config(a_root=str(tmp_path / "empty"),
                          b_root=str(tmp_path / "b"))
  with pytest.raises(FileNotFoundError, match="empty.*holds no images"):
    pipeline.build(config.data, "train")
  config = _folder_config(a_root=str(tmp_path / "missing"),
                          b_root=str(tmp_path / "b"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    pipeline.build(config.data, "train")
  with pytest.raises(FileNotFoundError, match="cyclegan.py:demo"):
    pipeline.build(_folder_config().data, "train")


def test_unreadable_image_names_the_file(tmp_path):
  folder = tmp_path / "a"
  _write_images(str(folder), ["ok"], "RGB")
  (folder / "bad.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="bad.png"):
    unpaired.load_image(str(folder / "bad.png"), 8, 3)


# Runs.


def _params(state):
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in
          jax.tree_util.tree_leaves_with_path(jax.device_get(state))
          if hasattr(v, "shape")}


@pytest.fixture(scope="session")
def cyc_run(tiny_run):
  """The unchanged :tiny run, shared with tests/test_train.py (conftest)."""
  return tiny_run("cyclegan").result


@pytest.mark.xdist_group("tiny_cyclegan")
def test_tiny_run_trains_evaluates_and_writes_grids(cyc_run):
  assert cyc_run.step == 8  # 2 epochs of 8 images at batch 2.
  for key in ("train/cycle_a", "train/idt_b", "train/d_a", "train/d_b",
              "train/g_ab", "train/g_ba"):
    assert np.isfinite(cyc_run.train_metrics[key])
  for key in ("eval/l1_BtoA", "eval/ssim_AtoB", "eval/cycle_a"):
    assert np.isfinite(cyc_run.eval_metrics[key])
  grid = np.asarray(Image.open(os.path.join(cyc_run.outputs["samples"],
                                            "a_to_b_latest.png")))
  assert grid.shape == (2 * 18 + 2, 3 * 18 + 2, 3)
  # The pools filled with the step's fakes (capacity 3, two per step).
  state = cyc_run.state
  assert int(state.pool_a.count) == 3 and int(state.pool_b.count) == 3
  assert np.abs(np.asarray(state.pool_b.images)).max() > 0
  assert os.path.exists(cyc_run.outputs.get("loss_plot", ""))


@pytest.mark.xdist_group("tiny_cyclegan")
def test_resume_is_bit_identical_including_pools(cyc_run, tmp_path):
  workdir = str(tmp_path / "resumed")
  first = train.train_and_evaluate(_tiny(), workdir, stop_after=3)
  assert first.step == 3
  # The checkpoint holds both pools and both networks' optimizer states.
  ckpt = ckpt_lib.Checkpointer(workdir)
  task = cyclegan.CycleGANTask(train.with_data_facts(_tiny(), 8))
  target = jax.eval_shape(task.init_state, jax.random.key(0))
  restored, _, meta = ckpt.restore(target)
  ckpt.close()
  assert meta["step"] == 3
  want, got = _params(first.state), _params(restored)
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  second = train.train_and_evaluate(_tiny(), workdir)
  assert second.step == 8
  want, got = _params(cyc_run.state), _params(second.state)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
