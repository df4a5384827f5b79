r"""Translates images with a trained pix2pix or CycleGAN run.

  python -m jaxgen.translate --workdir=runs/cgan --input=sketches/ --out=photos/
  python -m jaxgen.translate --workdir=runs/cyclegan --input=face.jpg \
      --out=sketches/ --direction=AtoB --keep_size

(or `jaxgen-translate` once installed). pix2pix (task cgan) translates the
one way it was trained, sketch -> photo; a label-conditioned run needs
--label=N. CycleGAN translates both ways: --direction=BtoA (sketch -> photo,
the default) or AtoB (photo -> sketch).

Inputs of any size and mode are converted to the model's: colour to luma
(ITU-R 601) or grey repeated to RGB, transparent pixels composited on white,
16-bit images scaled. Then the whole image is resized (bicubic, as the
training data loaders do) to the model's resolution: nothing is cropped, and
a non-square input is stretched. Outputs are PNGs at the model's resolution,
or with --keep_size resized back to the input's size (the same geometry in
reverse, so output pixels line up with the input's).

A folder is searched recursively and goes through the model in batches of
--batch_size with a progress line; outputs mirror the inputs' relative
paths (OUT/sub/name.png). Files that cannot be read are skipped with a
warning and counted at the end. An output path equal to an input's is an
error before anything is written; an output folder inside the input folder
is not read as input.

From Python:

  from jaxgen import run, translate
  r = run.load("runs/cyclegan")
  sketches = translate.translate_images(r, [photo], direction="AtoB")
  translate.translate_path(r, "photos/", "sketches/", direction="AtoB")
"""

import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Union

from absl import flags
from absl import logging
import jax.numpy as jnp
import numpy as np

from jaxgen import cli
from jaxgen import image_files
from jaxgen import run as run_lib
from jaxgen.data import image_io
from jaxgen.tasks import base


def label_kwargs(r: run_lib.Run, label: Optional[int], num: int) -> Dict:
  """The `label` input of a label-conditioned pix2pix run, checked.

  Args:
    r: the run.
    label: the class to draw, or None.
    num: batch size.

  Returns:
    {"label": [num] int32} for a label-conditioned run, else {}.

  Raises:
    RunError: a label is missing, out of range, or given to a run that
      takes none.
  """
  classes = int(getattr(r.task, "num_classes", 0))
  if not classes:
    if label is not None:
      raise run_lib.RunError(f"The {r.config.task!r} run in {r.workdir} is "
                             "not label-conditioned; leave out the label.")
    return {}
  if label is None or not 0 <= label < classes:
    raise run_lib.RunError(
        f"The run in {r.workdir} is label-conditioned: give a label in "
        f"[0, {classes}) (--label=N), got {label}.")
  return {"label": jnp.full((num,), label, jnp.int32)}


def prepare(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
  """One image in [0, 1] (any size, 1 or 3 channels) -> a model input.

  Args:
    image: [h, w, c] floats in [0, 1] (or uint8).
    shape: the model's (height, width, channels), see `Run.input_shape`.

  Returns:
    float32 [height, width, channels] in [-1, 1].
  """
  height, width, channels = shape
  x = np.asarray(image)
  x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
  x = image_files.to_uint8(base.to_channels(x, channels))
  return image_files.resize(x, height, width).astype(np.float32) / 127.5 - 1.0


def translate_images(r: run_lib.Run, images: Sequence[np.ndarray],
                     direction: Optional[str] = None,
                     label: Optional[int] = None, keep_size: bool = False,
                     batch_size: Optional[int] = None) -> List[np.ndarray]:
  """Translates images of any size and mode (see the module docstring).

  Args:
    r: a loaded translation run.
    images: [h, w, c] images in [0, 1] (or uint8), c = 1 or 3.
    direction: "AtoB", "BtoA", or None for the run's default.
    label: class of a label-conditioned pix2pix run.
    keep_size: resize each output to its input's size.
    batch_size: images per model call; the last batch is padded to it so
      that one compilation serves all (default: all at once).

  Returns:
    uint8 [h, w, c_out] outputs, in order.
  """
  direction = r.direction(direction)
  shape = r.input_shape(direction)
  size = batch_size or max(len(images), 1)
  kwargs = label_kwargs(r, label, size)
  outputs = []
  for start in range(0, len(images), size):
    chunk = images[start:start + size]
    x = np.zeros((size,) + shape, np.float32)
    x[:len(chunk)] = [prepare(im, shape) for im in chunk]
    y = image_files.to_uint8(base.to_unit(r.translate(x, direction,
                                                      **kwargs)))
    for im, out in zip(chunk, y):
      outputs.append(image_files.resize(out, *np.shape(im)[:2])
                     if keep_size else out)
  return outputs


def translate_path(workdir: Union[str, run_lib.Run], input_path: str,
                   out: str, direction: Optional[str] = None,
                   label: Optional[int] = None, keep_size: bool = False,
                   batch_size: int = 16, which: Optional[str] = None,
                   step: Optional[int] = None) -> Dict:
  """Translates an image file or a folder of them into PNGs under `out`.

  Args:
    workdir: the run's workdir, or a loaded Run.
    input_path: an image file or a folder (recursive).
    out: output folder.
    direction: "AtoB", "BtoA", or None for the run's default.
    label: class of a label-conditioned pix2pix run.
    keep_size: write outputs at their input's size.
    batch_size: images per model call.
    which: "best" or "latest" checkpoint (with a workdir).
    step: a specific checkpoint step (with a workdir).

  Returns:
    {"written": [paths], "skipped": [(path, reason)], "direction", "step",
    "seconds"}.

  Raises:
    RunError: see `jaxgen.run.load` and `label_kwargs`.
    FileNotFoundError: no input, or no images in the folder.
    ValueError: an output would overwrite an input.
    cli.UserError: none of the images could be read.
  """
  start = time.time()
  r = workdir if isinstance(workdir, run_lib.Run) else run_lib.load(
      workdir, which, step)
  direction = r.direction(direction)
  channels = r.input_shape(direction)[-1]
  label_kwargs(r, label, 1)  # Fails before any file is read.
  inputs = image_files.list_images(input_path, exclude=[out])
  outputs = image_files.output_paths(inputs, out)
  single = os.path.isfile(input_path)
  size = min(batch_size, len(inputs))
  progress = image_files.Progress(len(inputs), "translate")
  written, skipped = [], []
  for i in range(0, len(inputs), size):
    images, targets = [], []
    for inp, target in zip(inputs[i:i + size], outputs[i:i + size]):
      try:
        images.append(image_io.load_image(inp.path, channels))
      except image_io.ImageReadError as e:
        if single:
          raise
        logging.warning("Skipping %s", e)
        skipped.append((inp.path, str(e)))
        continue
      targets.append(target)
    if images:
      results = translate_images(r, images, direction, label, keep_size,
                                 batch_size=size)
      written += [image_files.write_png(t, y)
                  for t, y in zip(targets, results)]
    progress.update(len(inputs[i:i + size]))
  if not written:
    raise cli.UserError(f"None of the {len(inputs)} images under "
                        f"{input_path} could be read.")
  return {"written": written, "skipped": skipped, "direction": direction,
          "step": r.step, "seconds": time.time() - start}


def _define(fv: flags.FlagValues, argv: List[str]):
  del argv
  cli.define_run_flags(fv, "The pix2pix or CycleGAN run to use.")
  flags.DEFINE_string("input", None, "An image file or a folder of them.",
                      flag_values=fv)
  flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
  flags.DEFINE_enum("direction", None, ["AtoB", "BtoA"],
                    "CycleGAN: BtoA (sketch -> photo, default) or AtoB "
                    "(photo -> sketch).", flag_values=fv)
  flags.DEFINE_integer("label", None, "Class for a label-conditioned "
                       "pix2pix run.", flag_values=fv)
  flags.DEFINE_bool("keep_size", False, "Write outputs at their input's "
                    "size (default: the model's resolution).",
                    flag_values=fv)
  flags.DEFINE_integer("batch_size", 16, "Images per model call.",
                       lower_bound=1, flag_values=fv)
  flags.mark_flags_as_required(["workdir", "input", "out"], flag_values=fv)


def _translate(fv: flags.FlagValues):
  found = translate_path(fv.workdir, fv.input, fv.out, fv.direction,
                         fv.label, fv.keep_size, fv.batch_size, fv.which,
                         fv.step)
  cli.print_written(found, fv.out, "image(s)",
                    f"{found['direction'] or 'one-way'}, step {found['step']}, "
                    f"{found['seconds']:.1f} s")


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  return cli.run(_translate, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
