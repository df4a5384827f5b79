r"""Evaluates a trained run, or compares two image folders.

A run, from its workdir alone (the config is stored with each checkpoint):

  python -m jaxgen.evaluate --workdir=runs/gan [--which=best|latest] \
      [--step=N] [--num=10000] [--batch_size=64] [--out=PATH]

(or `jaxgen-evaluate` once installed)

  * generative tasks (gan, siamese_gan, vae): FID, KID, precision/recall
    (and IS when the Inception weights have a classifier) of `--num`
    generated images against the test split, whose statistics are cached
    (see `in_training.reference`);
  * translation tasks (cgan; cyclegan per direction, "_AtoB"/"_BtoA"): L1,
    PSNR and SSIM (mean ± std over the test images, [0, 1] scale) and
    FID/KID of the outputs against the targets.

JSON goes to WORKDIR/eval_<which>_<step>.json by default; a table naming
the Inception resize mode to stdout. Two folders (recursive; png/jpg of any
size, resized by the resize mode; greyscale repeated to 3 channels):

  python -m jaxgen.evaluate --real=DIR --fake=DIR [--out=PATH]

Large sets stream through Inception in fixed batches (bounded memory, a
progress line every ~10 s). Weights are never downloaded (see
`jaxgen.evaluation.weights`).
"""

import json
import logging as logging_std
import math
import os
import sys
import time
from typing import Dict, Iterator, List, Optional

from absl import flags
from absl import logging
import numpy as np

from jaxgen import backend
from jaxgen import cli
from jaxgen import run as run_lib
from jaxgen.data import pipeline
from jaxgen.evaluation import features
from jaxgen.evaluation import folders
from jaxgen.evaluation import in_training
from jaxgen.evaluation import paired
from jaxgen.evaluation import resize as resize_lib
from jaxgen.tasks import base

DEFAULT_NUM = 10_000
_SSIM_WINDOW = 11


class _DropChatter(logging_std.Filter):
  """Drops INFO records of orbax, which logs every checkpoint file read."""

  def filter(self, record):
    return (record.levelno >= logging_std.WARNING or
            f"{os.sep}orbax{os.sep}" not in record.pathname)


class EvaluationError(cli.UserError):
  """A problem with the inputs, reported without a traceback."""


def load_run(workdir: str, which: Optional[str] = None,
             step: Optional[int] = None,
             truncation: Optional[float] = None):
  """Restores a run (jaxgen.run.load) and builds its test split.

  Args:
    workdir: the run's workdir.
    which: "best" or "latest"; None picks best when the run has one.
    step: a specific step of `which` (default: the newest).
    truncation: sample with this `gan.truncation` (None: the stored one).

  Returns:
    (config, task, state, step, which, test dataset).

  Raises:
    jaxgen.run.RunError: no such workdir, no checkpoint in it, one that
      does not fit its config, or a truncation the run cannot use.
  """
  r = run_lib.load(workdir, which, step, truncation)
  test_ds = pipeline.build(r.config.data, "test")
  return r.config, r.task, r.state, r.step, r.which, test_ds


def generated(task, state, config, num: int, batch_size: int) -> np.ndarray:
  """The images that `evaluate_generative` scores, as one array.

  The run's fixed FID key (`in_training.noise_key(config.seed)`) in chunks
  of `batch_size`, as in training and in `jaxgen-evaluate`, so metrics of
  these images (and a grid of the first ones) describe the same samples.

  Args:
    task: a task implementing `generate`.
    state: its restored state.
    config: the run's config.
    num: images to generate.
    batch_size: generation chunk.

  Returns:
    [num, h, w, c] float32 images in [0, 1].
  """
  return np.concatenate([np.asarray(p) for p in _generated_chunks(
      task, state, config, num, batch_size)])[:num]


def _generated_chunks(task, state, config, num, batch_size):
  generate = backend.jit(task.generate, static_argnums=2)
  state = backend.jit(task.eval_state)(state)  # Once, not per chunk.
  return in_training.generated_images(
      generate, state, in_training.noise_key(config.seed), num, batch_size)


def evaluate_generative(task, state, config, test_ds, extractor, num: int,
                        batch_size: int,
                        images: Optional[np.ndarray] = None) -> Dict:
  """Set metrics of `num` generated images against the test split.

  Args:
    task: a task implementing `generate`.
    state: its restored state.
    config: the run's config.
    test_ds: the test split (the reference, cached).
    extractor: the Inception feature extractor.
    num: images to generate.
    batch_size: generation chunk and Inception batch size.
    images: `generated(task, state, config, num, batch_size)` when the
      caller already has them (else generated here, streamed chunk by
      chunk; the same images either way).

  Returns:
    Report fields: "kind", "num_real", "num_fake", "metrics", "notes".
  """
  eval_cfg = config.get("eval") or {}
  real = in_training.reference(config.data, test_ds, extractor,
                               batch_size=batch_size,
                               num_images=eval_cfg.get("fid_ref_num", 0))
  if images is None:
    chunks = _generated_chunks(task, state, config, num, batch_size)
  else:
    chunks = (images[i:i + batch_size]
              for i in range(0, len(images), batch_size))
  fake = features.compute_statistics(
      chunks, extractor, value_range=in_training.VALUE_RANGE, num_images=num,
      keep_features=True, name="generated images")
  notes = []
  found = in_training.set_metrics(real, fake, notes)
  return {"kind": "generative", "num_real": real.num_images,
          "num_fake": fake.num_images, "metrics": found, "notes": notes}


def evaluate_translation(task, state, config, test_ds, extractor,
                         batch_size: int, direction: str = "",
                         functions=None) -> Dict:
  """Paired metrics on the test split, and FID when `extractor` is given.

  Args:
    task: a task with the translation protocol (`Task.translations`).
    state: its restored state.
    config: the run's config.
    test_ds: the test split; every example is translated once.
    extractor: the Inception feature extractor, or None for paired metrics
      only.
    batch_size: translation and Inception batch size.
    direction: which of `task.translations()` ("" for one-way tasks).
    functions: (translate, targets) overriding that entry.

  Returns:
    Report fields: "kind", "num_images", "metrics" (l1, psnr, ssim with
    their "_std" over images, and FID/KID of outputs vs targets), "notes".
    Paired metrics are left out when `config.data.paired_eval` is False
    (targets that are not the inputs' counterparts).
  """
  translate_fn, targets_fn = functions or task.translations()[direction]
  translate = backend.jit(translate_fn)
  is_paired = bool(config.data.get("paired_eval", True))
  rng = in_training.noise_key(config.seed)
  per_image = {"l1": [], "psnr": [], "ssim": []}
  notes = []

  def outputs() -> Iterator[np.ndarray]:
    for out, target in in_training.translated_images(
        translate, state, test_ds, rng, batch_size, targets_fn):
      if not is_paired:
        yield out
        continue
      per_image["l1"].append(paired.l1_error(out, target))
      per_image["psnr"].append(paired.psnr(out, target))
      if min(out.shape[1:3]) >= _SSIM_WINDOW:
        per_image["ssim"].append(paired.ssim(out, target))
      yield out

  result = {"kind": "translation", "notes": notes}
  found = {}
  if extractor is None:
    for _ in outputs():
      pass
  else:
    real = in_training.reference(
        config.data, test_ds, extractor,
        split="test_targets" + (f"_{direction}" if direction else ""),
        batch_size=batch_size, fn=targets_fn)
    fake = features.compute_statistics(
        outputs(), extractor, value_range=in_training.VALUE_RANGE,
        keep_features=True, name="translated test images")
    found = in_training.set_metrics(real, fake, notes)
    notes.append("FID/KID/precision/recall: outputs vs the targets of the "
                 "test split.")
  if not is_paired:
    notes.append("L1/PSNR/SSIM skipped: the test targets are not paired "
                 "with the inputs (config.data.paired_eval).")
  elif not per_image["ssim"]:
    notes.append(f"SSIM skipped: images smaller than its {_SSIM_WINDOW} px "
                 "window.")
  for name, parts in per_image.items():
    if parts:
      with np.errstate(invalid="ignore"):  # std of an inf PSNR is nan.
        found[name], found[f"{name}_std"] = paired.mean_std(
            np.concatenate(parts))
  if math.isinf(found.get("psnr", 0.0)):
    notes.append("PSNR is inf: some outputs equal their targets exactly.")
  result["num_images"] = len(test_ds.source)
  result["metrics"] = found
  return result


def evaluate_run(workdir: str, which: Optional[str] = None,
                 num: Optional[int] = None, batch_size: int = 64,
                 out: Optional[str] = None,
                 resize_mode: Optional[str] = None,
                 step: Optional[int] = None,
                 truncation: Optional[float] = None) -> Dict:
  """Evaluates a trained run (see the module docstring) and writes JSON.

  Args:
    workdir: the run's workdir.
    which: "best" or "latest"; None: best when the run has one.
    num: generated images (default `config.eval.fid_num`, else 10000).
    batch_size: generation / translation / Inception batch size.
    out: JSON path (default WORKDIR/eval_<which>_<step>.json).
    resize_mode: Inception resize (default `config.eval.fid_resize`, else
      'bilinear-tf').
    step: a specific step of `which` (default: the newest).
    truncation: GAN runs: sample with this `gan.truncation` (None: the
      stored one).

  Returns:
    The report dict (also written to `out`; "out" holds the path).
  """
  start = time.time()
  config, task, state, step, which, test_ds = load_run(workdir, which, step,
                                                       truncation)
  eval_cfg = config.get("eval") or {}
  resize_mode = resize_mode or eval_cfg.get("fid_resize", "bilinear-tf")
  directions = task.translations()
  pairs = directions or None
  if pairs is None and not base.generates(task):
    raise EvaluationError(f"Task {config.task!r} neither generates nor "
                          "translates images; nothing to evaluate.")
  extractor, missing = None, None
  try:
    extractor = in_training.get_extractor(resize_mode, batch_size)
  except FileNotFoundError as e:  # weights.WeightsNotFoundError.
    if pairs is None:
      raise
    missing = (f"{str(e).splitlines()[0]} (python -m "
               "jaxgen.evaluation.weights --help says how to get them)")
  if pairs is not None:
    report = {"kind": "translation", "metrics": {}, "notes": []}
    for direction in directions:
      part = evaluate_translation(task, state, config, test_ds, extractor,
                                  batch_size, direction)
      suffix = f"_{direction}" if direction else ""
      report["metrics"].update(
          {f"{k}{suffix}": v for k, v in part["metrics"].items()})
      report["notes"] += [f"{direction}: {n}" if direction else n
                          for n in part["notes"]]
      report["num_images"] = part["num_images"]
    if missing:
      report["notes"].append(f"FID skipped: {missing}")
  else:
    num = num or eval_cfg.get("fid_num", 0) or DEFAULT_NUM
    report = evaluate_generative(task, state, config, test_ds, extractor,
                                 num, batch_size)
  report.update(workdir=os.path.abspath(workdir), which=which, step=step,
                task=config.task, dataset=config.data.name, split="test")
  report.update(_inception_info(extractor))
  name = f"eval_{which}_{step}"
  if truncation is not None:
    report["truncation"] = truncation
    name += f"_truncation{truncation:g}"  # Beside the untruncated report.
  report["seconds"] = round(time.time() - start, 1)
  report["out"] = out or os.path.join(report["workdir"], name + ".json")
  write_json(report, report["out"])
  return report


def _inception_info(extractor) -> Dict:
  return {} if extractor is None else {
      "resize_mode": extractor.resize_mode,
      "normalization": extractor.normalization}


def evaluate_folders(real: str, fake: str, batch_size: int = 64,
                     out: Optional[str] = None,
                     resize_mode: str = "bilinear-tf") -> Dict:
  """FID, KID, precision/recall (and IS of `fake`) between two folders.

  Args:
    real: folder of reference images.
    fake: folder of images to score.
    batch_size: Inception batch size.
    out: optional JSON path.
    resize_mode: Inception resize mode.

  Returns:
    The report dict.
  """
  start = time.time()
  # Both listed first, so an empty folder fails before any Inception work.
  real_paths, fake_paths = folders.list_images(real), folders.list_images(fake)
  extractor = in_training.get_extractor(resize_mode, batch_size)
  real_stats = folders.image_statistics(real_paths, extractor, batch_size,
                                        name=real)
  fake_stats = folders.image_statistics(fake_paths, extractor, batch_size,
                                        name=fake)
  notes = []
  report = {"kind": "folders", "real": os.path.abspath(real),
            "fake": os.path.abspath(fake),
            "num_real": real_stats.num_images,
            "num_fake": fake_stats.num_images,
            "metrics": in_training.set_metrics(real_stats, fake_stats, notes),
            "notes": notes}
  report.update(_inception_info(extractor))
  report["seconds"] = round(time.time() - start, 1)
  if out:
    report["out"] = out
    write_json(report, out)
  return report


def write_json(report: Dict, path: str) -> str:
  """Writes the report; non-finite numbers (PSNR of equal images) as text."""
  def clean(v):
    if isinstance(v, dict):
      return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
      return [clean(x) for x in v]
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(clean(report), f, indent=2)
  return path


_ROWS = (("fid", "FID", "", 3), ("kid", "KID", "kid_std", 5),
         ("precision", "precision", "", 4), ("recall", "recall", "", 4),
         ("is", "IS", "is_std", 3), ("l1", "L1 ([0, 1] scale)", "l1_std", 4),
         ("psnr", "PSNR (dB)", "psnr_std", 3), ("ssim", "SSIM", "ssim_std", 4))


def format_report(report: Dict) -> str:
  """The report as a human-readable table."""
  if report["kind"] == "folders":
    lines = [f"Real: {report['real']} ({report['num_real']} images)",
             f"Fake: {report['fake']} ({report['num_fake']} images)"]
  else:
    lines = [f"Run {report['workdir']}: {report['which']} checkpoint, step "
             f"{report['step']}, task {report['task']}, data "
             f"{report['dataset']} ({report['split']} split)"]
    if report["kind"] == "generative":
      lines.append(f"{report['num_fake']} generated vs {report['num_real']} "
                   "real test images" + (
                       f", codes truncated to ±{report['truncation']:g}"
                       if report.get("truncation") else ""))
    else:
      lines.append(f"{report['num_images']} test images translated")
  if "resize_mode" in report:
    lines.append(f"Inception: resize {report['resize_mode']} to 299 px, "
                 f"normalization {report['normalization']}")
  m = report["metrics"]
  lines.append(f"  {'metric':<28} value")
  suffixes = sorted({k.rsplit("_", 1)[1] for k in m
                     if k.endswith(("_AtoB", "_BtoA"))}) or [""]
  for suffix in suffixes:
    tail = f"_{suffix}" if suffix else ""
    for key, label, std_key, digits in _ROWS:
      if key + tail in m:
        text = f"{m[key + tail]:.{digits}f}"
        if std_key and std_key + tail in m:
          text = f"{text} ± {m[std_key + tail]:.{digits}f}"
        name = f"{label} {suffix}" if suffix else label
        lines.append(f"  {name:<28} {text}")
  lines += [f"Note: {n}" for n in report["notes"]]
  if report.get("out"):
    lines.append(f"Wrote {report['out']} ({report['seconds']:.1f} s)")
  return "\n".join(lines)


def _define(fv: flags.FlagValues, argv: List[str]):
  del argv
  cli.define_run_flags(fv, "Run to evaluate.")
  cli.define_truncation_flag(fv)
  flags.DEFINE_integer("num", None, "Generated images (default "
                       f"config.eval.fid_num or {DEFAULT_NUM}).",
                       flag_values=fv)
  flags.DEFINE_string("real", None, "Folder of reference images.",
                      flag_values=fv)
  flags.DEFINE_string("fake", None, "Folder of images to score.",
                      flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "Generation, translation and "
                       "Inception batch size.", lower_bound=1, flag_values=fv)
  flags.DEFINE_enum("resize", None, list(resize_lib.RESIZE_MODES),
                    "Inception resize mode (default config.eval.fid_resize "
                    "or bilinear-tf).", flag_values=fv)
  flags.DEFINE_string("out", None, "JSON output path.", flag_values=fv)


def _evaluate(fv: flags.FlagValues):
  folders = fv.real is not None or fv.fake is not None
  if folders == (fv.workdir is not None):
    raise cli.UsageError("give either --workdir, or both --real and --fake.")
  if folders and (fv.real is None or fv.fake is None):
    raise cli.UsageError("--real and --fake go together.")
  logging_std.getLogger("absl").addFilter(_DropChatter())
  if folders:
    report = evaluate_folders(fv.real, fv.fake, fv.batch_size, fv.out,
                              fv.resize or "bilinear-tf")
  else:
    report = evaluate_run(fv.workdir, fv.which, fv.num, fv.batch_size,
                          fv.out, fv.resize, fv.step, fv.truncation)
  print(format_report(report))


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  return cli.run(_evaluate, _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
