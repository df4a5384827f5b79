"""The blind naming test: shuffling, the numbered grid, answers, scores."""

import json
import os

import numpy as np
import pytest

from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen import train
from jaxgen.evaluation import blind
from tests import clis
from tests.conftest import config_with


def _constant_images(values, size=4):
  """One flat image per value, so each tile says which image it is."""
  return np.stack([np.full((size, size, 3), v, np.float32) for v in values])


def test_shuffle_keeps_each_image_with_its_source_and_class():
  real = _constant_images([0.1, 0.2, 0.3])
  fake = _constant_images([0.6, 0.7])
  test = blind.shuffle(real, fake, ["cat", "dog", "cat"], ["dog", "dog"],
                       seed=3)
  truth = {0.1: ("real", "cat"), 0.2: ("real", "dog"), 0.3: ("real", "cat"),
           0.6: ("generated", "dog"), 0.7: ("generated", "dog")}
  assert [t["tile"] for t in test.key] == [1, 2, 3, 4, 5]
  for image, tile in zip(test.images, test.key):
    assert truth[round(float(image[0, 0, 0]), 1)] == (tile["source"],
                                                      tile["class"])
  # The seed decides the order, and some seed moves a tile.
  again = blind.shuffle(real, fake, seed=3)
  np.testing.assert_array_equal(again.images, test.images)
  assert [t["class"] for t in again.key] == [""] * 5
  orders = {tuple(blind.shuffle(real, fake, seed=s).images[:, 0, 0, 0])
            for s in range(4)}
  assert len(orders) > 1


def test_shuffle_refuses_mismatched_inputs():
  with pytest.raises(ValueError, match="differ in shape"):
    blind.shuffle(np.zeros((2, 4, 4, 3)), np.zeros((2, 8, 8, 3)))
  with pytest.raises(ValueError, match="1 class names for 2 images"):
    blind.shuffle(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3)), ["cat"])


def test_grid_places_enlarged_tiles_under_their_numbers():
  images = _constant_images(np.linspace(0.1, 1.0, 10), size=8)
  out = blind.grid(images, columns=4, scale=2)
  strip, pad = 14, 4
  assert out.shape == (3 * (16 + strip + pad), 4 * (16 + pad), 3)
  assert out.dtype == np.uint8
  # Tile 6 (index 5): row 1, column 1, its 16x16 block below the strip.
  y, x = 1 * (16 + strip + pad) + strip, 1 * (16 + pad)
  np.testing.assert_array_equal(out[y:y + 16, x:x + 16],
                                round(images[5, 0, 0, 0] * 255))
  # The number is drawn in the white strip above: some dark pixels there.
  assert out[y - strip:y, x:x + 16].min() < 128
  # Greyscale tiles come out as RGB; by default 8 px tiles grow to 128.
  default = blind.grid(images[:2, ..., :1], columns=2)
  assert default.shape == (128 + strip + pad, 2 * (128 + pad), 3)


def test_parse_answers():
  assert blind.parse_answers(" 3:Cat, 7:dog ,12", 12) == {
      3: "cat", 7: "dog", 12: ""}
  assert blind.parse_answers("none", 4) == {}
  assert blind.parse_answers("", 4) == {}
  for text, message in (("x:cat", "not a tile number"),
                        ("0", "not in the grid"), ("13", r"\(1-12\)"),
                        ("3,3:cat", "answered twice")):
    with pytest.raises(ValueError, match=message):
      blind.parse_answers(text, 12)


def test_score_counts_named_and_right_per_source():
  key = [{"tile": 1, "source": "real", "class": "cat"},
         {"tile": 2, "source": "real", "class": "dog"},
         {"tile": 3, "source": "generated", "class": "cat"},
         {"tile": 4, "source": "generated", "class": "dog"},
         {"tile": 5, "source": "real", "class": "dog"},
         {"tile": 6, "source": "generated", "class": ""}]
  s = blind.score(key, {1: "cat", 2: "cat", 3: "", 4: "dog", 6: "dog"})
  assert s["real"] == {"tiles": 3, "named": 2, "named_fraction": 2 / 3,
                       "with_class": 2, "class_right": 1,
                       "class_right_fraction": 0.5}
  # Tile 3 is named without a class and tile 6's class is unknown: neither
  # counts towards the class.
  assert s["generated"] == {"tiles": 3, "named": 3, "named_fraction": 1.0,
                            "with_class": 1, "class_right": 1,
                            "class_right_fraction": 1.0}
  assert blind.score(key, {})["real"]["class_right_fraction"] is None


@pytest.fixture(scope="session")
def cond_workdir(tmp_path_factory):
  """siamese_gan.py:tiny,cond trained for one step."""
  config = config_with("siamese_gan", "tiny,cond")
  config.train.update(num_steps=1, eval_every=1, sample_every=1,
                      checkpoint_every=1, log_every=1)
  workdir = str(tmp_path_factory.mktemp("cond"))
  train.train_and_evaluate(config, workdir)
  return workdir


def test_make_test_of_a_conditional_run(cond_workdir):
  # The tiny config's held-out split has 2 images.
  test = blind.make_test(cond_workdir, num=2, seed=1)
  assert test.images.shape == (4, 16, 16, 3)  # :tiny is 16 px.
  assert 0.0 <= test.images.min() and test.images.max() <= 1.0
  generated = [t for t in test.key if t["source"] == "generated"]
  real = [t for t in test.key if t["source"] == "real"]
  # Samples asked for each class in turn; real tiles carry their classes.
  assert sorted(t["class"] for t in generated) == ["cat", "dog"]
  assert len(real) == 2 and {t["class"] for t in real} <= {"cat", "dog"}
  assert all(t["class"] for t in real)
  assert test.info["classes"] == ["cat", "dog"] and test.info["step"] == 1
  again = blind.make_test(cond_workdir, num=2, seed=1, which="latest",
                          step=1)
  np.testing.assert_array_equal(again.images, test.images)


def test_blind_test_and_sample_cli_with_selection(cond_workdir, tmp_path,
                                                  capsys):
  test = blind.make_test(cond_workdir, num=2, seed=1, select="real",
                         candidates=3)
  assert test.info["select"] == "real" and test.info["candidates"] == 3
  generated = [t for t in test.key if t["source"] == "generated"]
  assert sorted(t["class"] for t in generated) == ["cat", "dog"]
  r = run_lib.load(cond_workdir)
  want = sample.draw(r, 2, 1, 2, None, "real", 3)
  tiles = np.asarray(test.images)[[t["tile"] - 1 for t in generated]]
  order = [0 if t["class"] == "cat" else 1 for t in generated]
  np.testing.assert_allclose(tiles, want[order], atol=1e-6)
  out = tmp_path / "cats"
  assert sample.main([f"--workdir={cond_workdir}", f"--out={out}", "--num=2",
                      "--label=cat", "--select=real", "--candidates=2"]) == 0
  assert len(os.listdir(out / "samples")) == 2
  assert sample.main([f"--workdir={cond_workdir}", f"--out={tmp_path / 'x'}",
                      "--select=class"]) == 1
  assert "class head" in capsys.readouterr().err
  assert not (tmp_path / "x").exists()
  module = clis.launch_module("blind_test")
  assert module.main([f"--workdir={cond_workdir}", "--num=2",
                      f"--out={tmp_path / 'b'}", "--select=real"]) == 0
  with open(tmp_path / "b" / blind.KEY_FILE) as f:
    assert json.load(f)["candidates"] == 4


# With test_compare's tests, which train the same tiny runs (conftest.py).
@pytest.mark.xdist_group("tiny_cgan")
def test_cli_makes_and_scores_a_test(tiny_run, tmp_path):
  cli_module = clis.launch_module("blind_test")
  out = str(tmp_path / "blind")
  workdir = tiny_run("gan").result.workdir
  assert cli_module.main([f"--workdir={workdir}", "--num=4",
                          f"--out={out}"]) == 0
  assert os.path.isfile(os.path.join(out, blind.GRID_FILE))
  with open(os.path.join(out, blind.KEY_FILE)) as f:
    key = json.load(f)
  assert len(key["tiles"]) == 8 and key["workdir"] == workdir
  fakes = [t["tile"] for t in key["tiles"] if t["source"] == "generated"]
  answers = f"{fakes[0]},{fakes[1]}:dog"
  key_path = os.path.join(out, blind.KEY_FILE)
  assert cli_module.main([f"--key={key_path}", f"--answers={answers}"]) == 0
  with open(os.path.join(out, blind.SCORE_FILE)) as f:
    scored = json.load(f)
  assert scored["scores"]["generated"]["named"] == 2
  assert scored["scores"]["real"]["named"] == 0
  assert scored["answers"] == {str(fakes[0]): "", str(fakes[1]): "dog"}


@pytest.mark.xdist_group("tiny_cgan")
def test_cli_errors(tiny_run, tmp_path, capsys):
  cli_module = clis.launch_module("blind_test")
  gan = tiny_run("gan").result.workdir
  assert cli_module.main([f"--workdir={gan}"]) == 2
  assert "Give --workdir and --out" in capsys.readouterr().err
  assert cli_module.main([f"--workdir={gan}", f"--out={tmp_path}",
                          "--key=k.json", "--answers=1"]) == 2
  capsys.readouterr()
  cgan = tiny_run("cgan").result.workdir
  assert cli_module.main([f"--workdir={cgan}", f"--out={tmp_path}"]) == 1
  assert "does not generate images" in capsys.readouterr().err
  assert cli_module.main([f"--workdir={gan}", "--num=100000",
                          f"--out={tmp_path}"]) == 1
  assert "ask for at most" in capsys.readouterr().err
  key = tmp_path / "key.json"
  key.write_text(json.dumps({"tiles": [
      {"tile": 1, "source": "real", "class": ""}]}))
  assert cli_module.main([f"--key={key}", "--answers=2"]) == 1
  assert "not in the grid" in capsys.readouterr().err
  assert not (tmp_path / blind.SCORE_FILE).exists()
  for text in ("not json", json.dumps({"step": 1})):
    key.write_text(text)
    assert cli_module.main([f"--key={key}", "--answers=1"]) == 1
    assert "launch/blind_test.py wrote" in capsys.readouterr().err
