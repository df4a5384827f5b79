"""A blind naming test: can a person name what a run's samples show?

FID, KID, precision and recall say how far generated images are from real
ones in Inception features; whether a person can name what a sample shows
(a cat, a dog, a signature) they do not. This module turns that judgement
into a count a judge makes without knowing which image is which:

  1. `make_test` shuffles real held-out images and a run's samples into one
     numbered grid (`grid`) and keeps the key -- which tile is real, which
     generated, and its class where known -- in a separate file the judge
     does not open.
  2. The judge lists the tiles they can name, with what they see
     ("3:cat,7:dog,12"; a bare number names a tile without a class).
  3. `score` counts per source: tiles named, and of those named with a
     class that the key knows, the ones named right (a real tile's class,
     or the class a conditional run was asked for).

The real tiles calibrate the judge and the resolution: a fraction of
samples named means something only beside the fraction of real images named
at the same size. No library offers this (crowd protocols such as HYPE
need a crowd platform); it is numpy and PIL. `make_test(..., select=...)`
tests samples that are each the best of k draws by the run's own
discriminator (jaxgen/sample.py `draw`).

  from jaxgen.evaluation import blind
  test = blind.make_test("runs/sgan", num=32, seed=0)
  blind.write_test(test, "out/blind")      # grid.png, key.json
  blind.score(test.key, blind.parse_answers("3:cat,7:dog,12", 64))
"""

import json
import os
from typing import Dict, List, NamedTuple, Optional, Sequence

import jax
import numpy as np
from PIL import Image
from PIL import ImageDraw

from jaxgen import image_files
from jaxgen import reporting
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen.data import pipeline

REAL, GENERATED = "real", "generated"
KEY_FILE, GRID_FILE, SCORE_FILE = "key.json", "grid.png", "score.json"
TILE_PIXELS = 128  # The side a tile is enlarged to by default.


class Test(NamedTuple):
  """A blind test: the tiles in grid order and what each one is.

  Attributes:
    images: float32 [n, h, w, c] in [0, 1], tile i + 1 at index i.
    key: per tile {"tile": i + 1, "source": "real" | "generated", "class":
      a class name or ""}.
    info: where the tiles come from (workdir, step, seed, classes).
  """
  images: np.ndarray
  key: List[Dict]
  info: Dict


def shuffle(real: np.ndarray, generated: np.ndarray,
            real_classes: Optional[Sequence[str]] = None,
            generated_classes: Optional[Sequence[str]] = None,
            seed: int = 0) -> Test:
  """Real and generated images in one random order, with their key.

  Args:
    real: [n, h, w, c] real images in [0, 1].
    generated: [m, h, w, c] generated images of the same shape.
    real_classes: n class names of the real images (None: unknown).
    generated_classes: m class names the samples were asked for (None:
      unconditional).
    seed: seed of the order.

  Returns:
    A Test of n + m tiles (info empty).

  Raises:
    ValueError: the images differ in shape, or a class list in length.
  """
  real, generated = np.asarray(real), np.asarray(generated)
  if real.shape[1:] != generated.shape[1:]:
    raise ValueError(f"Real images {real.shape[1:]} and generated ones "
                     f"{generated.shape[1:]} differ in shape.")
  sources = [REAL] * len(real) + [GENERATED] * len(generated)
  classes = []
  for images, names in ((real, real_classes),
                        (generated, generated_classes)):
    names = [""] * len(images) if names is None else list(names)
    if len(names) != len(images):
      raise ValueError(f"{len(names)} class names for {len(images)} images.")
    classes += names
  order = np.random.default_rng(seed).permutation(len(sources))
  images = np.concatenate([real, generated])[order]
  key = [{"tile": i + 1, "source": sources[j], "class": classes[j]}
         for i, j in enumerate(order)]
  return Test(images.astype(np.float32), key, {})


def grid(images: np.ndarray, columns: int = 8,
         scale: Optional[int] = None) -> np.ndarray:
  """The tiles enlarged (nearest neighbour) and numbered from 1.

  Args:
    images: [n, h, w, c] in [0, 1].
    columns: tiles per row.
    scale: enlargement of each tile; None: to about TILE_PIXELS a side
      (32 px CIFAR images are small to judge).

  Returns:
    uint8 [rows * (h * scale + strip + pad), columns * (w * scale + pad),
    3]: each tile under a white strip carrying its number.
  """
  images = np.asarray(images)
  if scale is None:
    scale = max(1, TILE_PIXELS // max(images.shape[1:3]))
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  big = image_files.to_uint8(
      np.repeat(np.repeat(images, scale, axis=1), scale, axis=2))
  h, w = big.shape[1:3]
  strip, pad = 14, 4
  rows = -(-len(big) // columns)
  canvas = Image.new("RGB", (columns * (w + pad), rows * (h + strip + pad)),
                     "white")
  draw = ImageDraw.Draw(canvas)
  for i, tile in enumerate(big):
    x = (i % columns) * (w + pad)
    y = (i // columns) * (h + strip + pad)
    draw.text((x + 2, y + 1), str(i + 1), fill="black")
    canvas.paste(Image.fromarray(tile), (x, y + strip))
  return np.asarray(canvas)


def parse_answers(text: str, num_tiles: int) -> Dict[int, str]:
  """A judge's answers: the tiles named, each with a class or "".

  Args:
    text: comma-separated tile numbers, each optionally with ":class"
      ("3:cat, 7:dog, 12"); "" or "none" when no tile could be named.
    num_tiles: tiles in the grid (numbers run from 1).

  Returns:
    {tile number: lower-case class name or ""}.

  Raises:
    ValueError: a number that is not a tile, given twice, or not a number.
  """
  answers = {}
  if text.strip().lower() in ("", "none"):
    return answers
  for item in text.split(","):
    number, _, name = item.strip().partition(":")
    if not number.strip().isdigit():
      raise ValueError(f"Answer {item.strip()!r} is not a tile number "
                       "(write e.g. 3:cat,7:dog,12).")
    tile = int(number)
    if not 1 <= tile <= num_tiles:
      raise ValueError(f"Tile {tile} is not in the grid (1-{num_tiles}).")
    if tile in answers:
      raise ValueError(f"Tile {tile} is answered twice.")
    answers[tile] = name.strip().lower()
  return answers


def score(key: Sequence[Dict], answers: Dict[int, str]) -> Dict[str, Dict]:
  """Per source: how many tiles were named, and how many named right.

  Args:
    key: a Test's key.
    answers: parse_answers' output.

  Returns:
    {"real" | "generated": {"tiles", "named", "named_fraction",
    "with_class" (named with a class, where the key knows one),
    "class_right", "class_right_fraction" (None without such tiles)}}.
  """
  found = {}
  for source in (REAL, GENERATED):
    tiles = [t for t in key if t["source"] == source]
    named = [t for t in tiles if t["tile"] in answers]
    classed = [t for t in named if t["class"] and answers[t["tile"]]]
    right = [t for t in classed if answers[t["tile"]] == t["class"].lower()]
    found[source] = {
        "tiles": len(tiles), "named": len(named),
        "named_fraction": len(named) / len(tiles) if tiles else None,
        "with_class": len(classed), "class_right": len(right),
        "class_right_fraction": (len(right) / len(classed) if classed
                                 else None)}
  return found


def _real_images(r: run_lib.Run, names: Sequence[str]):
  """The run's held-out images and, given its class names, their classes."""
  images, classes = [], []
  for batch in pipeline.eval_batches(pipeline.build(r.config.data, "test"),
                                     100):
    mask = np.asarray(batch["mask"]) > 0
    images.append(np.asarray(batch["image"])[mask])
    if names and "label" in batch:
      index = np.asarray(r.task.batch_labels(batch))[mask]
      classes += [names[i] if i >= 0 else "" for i in index]
  return np.concatenate(images), (classes if names and classes else None)


def make_test(workdir: str, num: int = 32, seed: int = 0,
              which: Optional[str] = None,
              step: Optional[int] = None, select: Optional[str] = None,
              candidates: int = 4) -> Test:
  """A blind test of `num` real held-out images and `num` of a run's samples.

  Class-conditional runs are asked for each class in turn (num split
  evenly); their real tiles carry the test images' classes.

  Args:
    workdir: a generative run (GAN, Siamese GAN, VAE).
    num: real tiles, and generated tiles.
    seed: picks the real images, the samples' noise and the order.
    which: "best" or "latest" checkpoint (None as jaxgen.run.load).
    step: a specific step of `which` (default: the newest).
    select: GAN runs: each sample the best of `candidates` draws by the
      run's discriminator, "real" or "class" (jaxgen.sample.draw).
    candidates: draws per sample with `select`.

  Returns:
    A Test; info holds the workdir, step, checkpoint kind, seed, the
    run's classes and the selection.

  Raises:
    jaxgen.run.RunError: no such run or checkpoint.
    ValueError: the run does not generate images, or num < 1, or the
      held-out split has fewer than num images.
  """
  if num < 1:
    raise ValueError(f"num must be at least 1, got {num}.")
  r = run_lib.load(workdir, which, step)
  if not r.generates:
    raise ValueError(f"The {r.config.task!r} run in {workdir} does not "
                     "generate images; a blind test needs samples.")
  if select is not None:
    sample.check_select(r, select, candidates)
  names = list(getattr(r.task, "class_names", []))
  real, real_classes = _real_images(r, names)
  if len(real) < num:
    raise ValueError(f"The held-out split of {workdir} has {len(real)} "
                     f"images; ask for at most that many (num={num}).")
  rng = np.random.default_rng(seed)
  pick = np.sort(rng.choice(len(real), num, replace=False))
  real = real[pick]
  real_classes = (None if real_classes is None
                  else [real_classes[i] for i in pick])
  labels = np.arange(num) % len(names) if names else None
  if select is not None:  # Asks for the classes in turn too.
    generated = sample.draw(r, num, seed, num, None, select, candidates)
  else:
    generated = np.asarray(r.generate(jax.random.key(seed), num, labels))
  generated_classes = None if labels is None else [names[i] for i in labels]
  test = shuffle(real, generated, real_classes, generated_classes, seed)
  return test._replace(info={
      "workdir": r.workdir, "step": r.step, "which": r.which, "seed": seed,
      "classes": names, "select": select,
      "candidates": candidates if select else 1})


def write_test(test: Test, out_dir: str, columns: int = 8,
               scale: Optional[int] = None) -> Dict[str, str]:
  """Writes the grid the judge sees and the key they must not open.

  Args:
    test: from make_test or shuffle.
    out_dir: output folder (created).
    columns: tiles per row of the grid.
    scale: enlargement of each tile (None: as `grid`).

  Returns:
    {"grid": path, "key": path}.
  """
  os.makedirs(out_dir, exist_ok=True)
  paths = {"grid": os.path.join(out_dir, GRID_FILE),
           "key": os.path.join(out_dir, KEY_FILE)}
  reporting.save_png(paths["grid"], grid(test.images, columns, scale))
  with open(paths["key"], "w") as f:
    json.dump({**test.info, "tiles": test.key}, f, indent=1)
  return paths


def score_file(key_path: str, answers: str) -> Dict:
  """Scores answers against a written key and saves score.json beside it.

  Args:
    key_path: a key.json written by write_test.
    answers: the judge's answers (parse_answers' format).

  Returns:
    {"scores": score's output, "answers": the parsed answers, and the
    key's info}; also written to score.json in the key's folder.

  Raises:
    ValueError: the file is not such a key, or the answers do not fit it.
  """
  with open(key_path) as f:
    try:
      stored = json.load(f)
    except ValueError as e:
      raise ValueError(f"{key_path} is not JSON ({e}); give the key.json "
                       "that launch/blind_test.py wrote.") from e
  if not isinstance(stored, dict) or not isinstance(stored.get("tiles"),
                                                    list):
    raise ValueError(f"{key_path} holds no tiles; give the key.json that "
                     "launch/blind_test.py wrote.")
  tiles = stored.pop("tiles")
  parsed = parse_answers(answers, len(tiles))
  result = {**stored, "answers": {str(k): v for k, v in parsed.items()},
            "scores": score(tiles, parsed)}
  with open(os.path.join(os.path.dirname(os.path.abspath(key_path)),
                         SCORE_FILE), "w") as f:
    json.dump(result, f, indent=1)
  return result
