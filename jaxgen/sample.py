r"""Draws images from a trained VAE, GAN or Siamese GAN run.

  python -m jaxgen.sample --workdir=runs/gan --num=64 --out=out/gan
  python -m jaxgen.sample --workdir=runs/vae --out=out/vae --interpolate \
      --reconstruct=scans/
  python -m jaxgen.sample --workdir=runs/sgan_cond --out=out/cats --label=cat

(or `jaxgen-sample` once installed). Writes under --out:

  samples.png              the --num images in a grid, 8 per row
  samples/0000.png ...     each of them
  interpolation.png        (VAE, --interpolate) one row per latent walk of
                           --walk_steps images from point i to point i + 1,
                           linear in z: between the encoded --reconstruct
                           images when given, else between draws from the
                           prior; about --num images in all
  reconstruction.png       (VAE, --reconstruct=FOLDER) pairs of input and
                           reconstruction (the posterior mean, decoded)
  reconstruction/NAME.png  each reconstruction, named as its input

--reconstruct reads a file or a folder (recursive) the way the run's
dataset reads scans (jaxgen.data.preprocess: greyscale, ink found by Otsu's
threshold, cropped to the ink, padded square, resized; ink = 1 when
`data.invert`), so it expects dark ink on light paper like the training
scans. Files that cannot be read (or hold no ink) are skipped with a warning
and counted. Images are written as the model gives them: signature models
draw white ink on black. The same --seed and --batch_size give the same
images. --label asks a class-conditional GAN (configs/siamese_gan.py:cond)
for one class, by name or index; without it each sample's class is drawn
at random.

--select=real|class draws --candidates codes per sample and keeps the one
the run's own discriminator rates best (best-of-k rejection, as in
discriminator rejection sampling but with a fixed cost): `real` by D's
real/fake logit, `class` by the log-probability its class head (`:cond,ac`)
gives the class asked for. Class-conditional runs then ask for the classes
in turn (equal numbers) unless --label is given. Measured on the Siamese
GAN in README "Results".

From Python:

  from jaxgen import run, sample
  images = sample.draw(run.load("runs/gan"), 16, seed=0)  # [16, h, w, c]
  vae = run.load("runs/vae")
  walks = sample.latent_walks(vae, sample.prior_points(vae, 3), steps=8)
  sample.sample_run(vae, "out/vae", num=64, interpolate=True)
"""

import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from absl import flags
from absl import logging
import jax
import numpy as np

from jaxgen import cli
from jaxgen import image_files
from jaxgen import reporting
from jaxgen import run as run_lib
from jaxgen.data import image_io
from jaxgen.data import preprocess

GRID_COLUMNS = 8
SELECT_BY = ("real", "class")  # Scores of Run.d_scores that `draw` ranks by.


def class_index(r: run_lib.Run, label: str) -> int:
  """The index of class `label` (a name or an index) of a conditional run.

  Args:
    r: a loaded run.
    label: a class name of the run's data (e.g. "cat") or its index.

  Returns:
    The class index.

  Raises:
    cli.UserError: the run is not class-conditional, or has no such class.
  """
  names = list(getattr(r.task, "class_names", []))
  if not names:
    raise cli.UserError(
        f"--label needs a class-conditional run; the {r.config.task!r} run "
        f"in {r.workdir} is not (configs/siamese_gan.py:cond is).")
  key = label.strip().lower()
  if key in names:
    return names.index(key)
  if key.isdigit() and int(key) < len(names):
    return int(key)
  raise cli.UserError(f"Unknown class {label!r}; this run's classes are "
                      f"{', '.join(names)} (or 0-{len(names) - 1}).")


def draw(r: run_lib.Run, num: int, seed: int = 0,
         batch_size: int = 64, label: Optional[int] = None,
         select: Optional[str] = None, candidates: int = 4) -> np.ndarray:
  """`num` images from a generative run, in [0, 1].

  Args:
    r: a loaded VAE, GAN or Siamese GAN run.
    num: images wanted.
    seed: noise seed; chunk i uses fold_in(key(seed), i).
    batch_size: images per model call (all calls the same size: one
      compilation).
    label: class-conditional runs: the class index to ask for (None: drawn
      uniformly, or in turn with `select`).
    select: None, or "real" / "class": image i is the best of `candidates`
      draws asked for the same class, by that score of `Run.d_scores`
      (module docstring).
    candidates: draws per image with `select`.

  Returns:
    float32 [num, h, w, c].

  Raises:
    cli.UserError: `select` does not apply to this run (`check_select`).
  """
  if select is None:
    labels = None if label is None else np.full((num,), label, np.int32)
    return _generate(r, num, seed, batch_size, labels)
  check_select(r, select, candidates)
  labels = None
  classes = getattr(r.task, "num_classes", 0)
  if classes:
    asked = (np.arange(num) % classes if label is None
             else np.full((num,), label))
    labels = np.tile(asked, candidates).astype(np.int32)
  images = _generate(r, num * candidates, seed, batch_size, labels)
  scores = _scores(r, images, labels, select, batch_size)
  best = np.argmax(scores.reshape(candidates, num), axis=0)
  return images.reshape((candidates, num) + images.shape[1:])[
      best, np.arange(num)]


def check_select(r: run_lib.Run, select: str, candidates: int):
  """Raises cli.UserError unless `draw(..., select, candidates)` applies."""
  if select not in SELECT_BY:
    raise cli.UserError(f"Unknown selection {select!r}; choose one of "
                        f"{', '.join(SELECT_BY)}.")
  if candidates < 2:
    raise cli.UserError(f"Selection needs at least 2 candidates per image, "
                        f"got {candidates}.")
  if not callable(getattr(r.task, "d_scores", None)):
    raise cli.UserError(
        f"--select ranks samples by the run's discriminator; the "
        f"{r.config.task!r} run in {r.workdir} has none (gan and siamese_gan "
        "runs do).")
  if select == "class" and not getattr(r.task, "use_class_head", False):
    raise cli.UserError(
        f"--select=class needs a discriminator with a class head "
        f"(configs/siamese_gan.py:cond,ac); the run in {r.workdir} has none. "
        "--select=real works without.")


def selections(r: run_lib.Run) -> List[str]:
  """The scores of SELECT_BY that `draw` can select `r`'s samples by."""
  def applies(by):
    try:
      check_select(r, by, 2)
    except cli.UserError:
      return False
    return True
  return [by for by in SELECT_BY if applies(by)]


def _generate(r, num, seed, batch_size, labels):
  """`num` images in chunks of one size; labels [num] or None."""
  size = max(1, min(batch_size, num))
  key = jax.random.key(seed)
  chunks = []
  for i in range(-(-num // size)):
    # The last chunk's labels are padded by repetition to the chunk size.
    y = None if labels is None else np.resize(labels[i * size:], size)
    chunks.append(np.asarray(r.generate(jax.random.fold_in(key, i), size, y)))
  return np.concatenate(chunks)[:num]


def _scores(r, images, labels, by, batch_size):
  """`Run.d_scores(...)[by]` of `images`, in batches of one size."""
  size = max(1, min(batch_size, len(images)))
  more = () if labels is None else (labels,)
  return _batched(lambda *a: r.d_scores(*a)[by], images, size, *more)


def _batched(fn: Callable, x: np.ndarray, size: int,
             *more: np.ndarray) -> np.ndarray:
  """fn(x, *more) in batches of exactly `size` rows (the last zero-padded)."""
  def padded(a, i):
    chunk = a[i:i + size]
    return np.concatenate(
        [chunk, np.zeros((size - len(chunk),) + a.shape[1:], a.dtype)])

  return np.concatenate([
      np.asarray(fn(*(padded(a, i) for a in (x,) + more)))[:len(x[i:i + size])]
      for i in range(0, len(x), size)])


def prior_points(r: run_lib.Run, num: int, seed: int = 0) -> np.ndarray:
  """`num` latent points z ~ N(0, I) of a VAE run: [num, *latent shape]."""
  return np.asarray(jax.random.normal(jax.random.key(seed),
                                      (num,) + r.task.latent_shape))


def decode(r: run_lib.Run, z: np.ndarray, batch_size: int = 64
           ) -> np.ndarray:
  """Images [n, h, w, c] in [0, 1] of latent points [n, ...] (VAE)."""
  return _batched(r.decode, np.asarray(z, np.float32),
                  min(batch_size, len(z)))


def encode(r: run_lib.Run, images: np.ndarray,
           batch_size: int = 64) -> np.ndarray:
  """Posterior means [n, *latent shape] of images in [0, 1] (VAE)."""
  return _batched(lambda x: r.encode(x)[0], np.asarray(images, np.float32),
                  min(batch_size, len(images)))


def reconstruct(r: run_lib.Run, images: np.ndarray,
                batch_size: int = 64) -> np.ndarray:
  """Decoded posterior means of images in [0, 1] (VAE)."""
  return decode(r, encode(r, images, batch_size), batch_size)


def latent_walks(r: run_lib.Run, points: np.ndarray, steps: int = 8,
                 batch_size: int = 64) -> np.ndarray:
  """Decoded straight walks from each point to the next, in [0, 1].

  Args:
    r: a loaded VAE run.
    points: [k, *latent shape] latent points, k >= 2.
    steps: images per walk, both ends included.
    batch_size: points decoded per model call.

  Returns:
    [(k - 1) * steps, h, w, c]: walk i (a grid row) from point i to i + 1.
  """
  t = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape(
      (1, steps) + (1,) * (points.ndim - 1))
  a, b = points[:-1, None], points[1:, None]
  return decode(r, (a * (1.0 - t) + b * t).reshape((-1,) + points.shape[1:]),
                batch_size)


def read_scans(r: run_lib.Run, inputs: Sequence[image_files.Input],
               strict: bool = False
               ) -> Tuple[np.ndarray, List[image_files.Input],
                          List[Tuple[str, str]]]:
  """Reads image files as the run's signature dataset does.

  Args:
    r: a loaded VAE run (its `config.data` sets resolution and ink).
    inputs: files from `image_files.list_images`.
    strict: raise on an unreadable file instead of skipping it.

  Returns:
    (images [n, res, res, channels] in [0, 1], the inputs read, and
    (path, reason) of those skipped).
  """
  d = r.config.data
  images, kept, skipped = [], [], []
  for inp in inputs:
    try:
      x = preprocess.preprocess_scan(
          image_io.load_grayscale(inp.path), res=d.res,
          invert=d.get("invert", True), binarize=d.get("binarize", True))
    except ValueError as e:  # ImageReadError, or no ink in the image.
      if strict:
        raise
      logging.warning("Skipping %s: %s", inp.path, e)
      skipped.append((inp.path, str(e)))
      continue
    images.append(np.repeat(x[..., None], d.get("channels", 1), axis=-1))
    kept.append(inp)
  shape = (0, d.res, d.res, d.get("channels", 1))
  return (np.stack(images) if images else np.zeros(shape, np.float32), kept,
          skipped)


def _write_grid(out: str, name: str, images: np.ndarray,
                cols: int = GRID_COLUMNS) -> str:
  return reporting.save_png(os.path.join(out, f"{name}.png"),
                            reporting.make_grid(images, cols))


def _write_each(folder: str, images: np.ndarray,
                names: Sequence[str]) -> List[str]:
  return [image_files.write_png(os.path.join(folder, name + ".png"),
                                image_files.to_uint8(image))
          for image, name in zip(images, names)]


def sample_run(workdir: Union[str, run_lib.Run], out: str, num: int = 64,
               seed: int = 0, which: Optional[str] = None,
               step: Optional[int] = None, interpolate: bool = False,
               reconstruct_path: Optional[str] = None, walk_steps: int = 8,
               batch_size: int = 64,
               truncation: Optional[float] = None,
               label: Optional[str] = None, select: Optional[str] = None,
               candidates: int = 4) -> Dict:
  """Writes samples (and VAE walks and reconstructions) under `out`.

  Args:
    workdir: the run's workdir, or a loaded Run.
    out: output folder (see the module docstring for its files).
    num: samples to draw (0: none); also the size of the walks.
    seed: noise seed.
    which: "best" or "latest" checkpoint (with a workdir).
    step: a specific checkpoint step (with a workdir).
    interpolate: write latent walks (VAE).
    reconstruct_path: an image file or folder to reconstruct (VAE).
    walk_steps: images per walk.
    batch_size: images per model call.
    truncation: GAN runs: sample with this `gan.truncation` (with a
      workdir; None: the stored one).
    label: class-conditional runs: the class (name or index) every sample
      is asked for (None: drawn uniformly).
    select: GAN runs: "real" or "class" keeps each sample's best of
      `candidates` draws (`draw`).
    candidates: draws per sample with `select`.

  Returns:
    {"written": [paths], "skipped": [(path, reason)], "step"}.

  Raises:
    RunError: see `jaxgen.run.load`.
    cli.UserError: the run cannot do what was asked.
  """
  r = workdir if isinstance(workdir, run_lib.Run) else run_lib.load(
      workdir, which, step, truncation)
  vae_only = interpolate or reconstruct_path
  if vae_only and not callable(getattr(r.task, "encode", None)):
    raise cli.UserError(f"--interpolate and --reconstruct need a VAE run; "
                        f"{r.workdir} holds a {r.config.task!r} run.")
  if num and not r.generates:
    raise cli.UserError(
        f"The {r.config.task!r} run in {r.workdir} does not generate images"
        + ("; translate with python -m jaxgen.translate." if r.directions
           else "."))
  index = None if label is None else class_index(r, label)
  if select is not None:
    check_select(r, select, candidates)  # Before anything is written.
  written, skipped, points = [], [], None
  if reconstruct_path:
    folder = os.path.join(out, "reconstruction")
    inputs = image_files.list_images(
        reconstruct_path, exclude=[folder, os.path.join(out, "samples")])
    image_files.output_paths(inputs, folder)  # Checked before any writing.
    images, kept, skipped = read_scans(
        r, inputs, strict=os.path.isfile(reconstruct_path))
    if not kept:
      raise cli.UserError(f"None of the {len(inputs)} images under "
                          f"{reconstruct_path} could be read.")
    points = encode(r, images, batch_size)
    recon = decode(r, points, batch_size)
    # Input and reconstruction side by side, four pairs per grid row.
    pairs = np.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:])
    written.append(_write_grid(out, "reconstruction", pairs))
    written += _write_each(folder, recon, [i.name for i in kept])
  if num:
    images = draw(r, num, seed, batch_size, index, select, candidates)
    written.append(_write_grid(out, "samples", images))
    written += _write_each(os.path.join(out, "samples"), images,
                           [f"{i:04d}" for i in range(num)])
  if interpolate:
    walks = max(1, num // walk_steps)
    if points is None:
      points = prior_points(r, walks + 1, seed)
    elif len(points) < 2:
      raise cli.UserError("Walks between encoded images need at least two "
                          "readable images.")
    written.append(_write_grid(out, "interpolation", latent_walks(
        r, points[:walks + 1], walk_steps, batch_size), walk_steps))
  return {"written": written, "skipped": skipped, "step": r.step}


def _define(fv: flags.FlagValues, argv: List[str]):
  del argv
  cli.define_run_flags(fv, "The VAE, GAN or Siamese GAN run to sample.")
  cli.define_truncation_flag(fv)
  cli.define_select_flags(fv)
  flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
  flags.DEFINE_integer("num", 64, "Images to draw (0: none).", lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Noise seed.", flag_values=fv)
  flags.DEFINE_string("label", None, "Class-conditional GAN: the class to "
                      "draw (a name of the run's data.classes, e.g. cat, or "
                      "its index); default: classes drawn at random.",
                      flag_values=fv)
  flags.DEFINE_bool("interpolate", False, "VAE: also write latent walks.",
                    flag_values=fv)
  flags.DEFINE_string("reconstruct", None, "VAE: an image file or folder to "
                      "reconstruct (walks then go between its images).",
                      flag_values=fv)
  flags.DEFINE_integer("walk_steps", 8, "Images per latent walk.",
                       lower_bound=2, flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "Images per model call.",
                       lower_bound=1, flag_values=fv)
  flags.mark_flags_as_required(["workdir", "out"], flag_values=fv)


def _sample(fv: flags.FlagValues):
  found = sample_run(fv.workdir, fv.out, fv.num, fv.seed, fv.which, fv.step,
                     fv.interpolate, fv.reconstruct, fv.walk_steps,
                     fv.batch_size, fv.truncation, fv.label, fv.select,
                     fv.candidates)
  cli.print_written(found, fv.out, "file(s)", f"step {found['step']}")


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  return cli.run(_sample, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
