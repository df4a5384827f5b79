r"""Compares trained runs of any family, grouped, with a spread over seeds.

Each run is restored from its workdir (jaxgen.run.load, with the config
stored in it) and measured on the held-out ("test") split of its own data
config, with the functions of jaxgen.evaluate:

  * generative tasks (gan, siamese_gan, vae): `swd`, the sliced Wasserstein
    distance of min(num, test size) generated and test images in [-1, 1]
    (the mean over 8 x 128 random directions), always; and FID, KID,
    precision, recall of `num` generated images (IS when the Inception
    weights have a classifier) unless `fid` is off or the weights are
    missing (jaxgen.evaluation.weights);
  * translation tasks (cgan, cyclegan per direction "_AtoB"/"_BtoA"): L1,
    PSNR, SSIM on the paired test split (and their per-image "_std") and
    FID/KID of the outputs against the targets;
  * label-conditioned cGANs (`data.num_classes` > 0), given a trained
    classifier (configs/classifier.py): `acc_real`, `acc_generated`,
    `acc_requested` of jaxgen.tasks.classifier.evaluate_generated (for a
    class-conditional GAN `acc_real`, `acc_requested` and per class, of
    evaluate_class_samples on `num` samples).

With `select` ("real" or "class"), a GAN's scored samples are each the
best of `candidates` draws by its own discriminator (jaxgen/sample.py), and
so are the classifier check's.

Runs with the same group label (e.g. one recipe trained with seeds 0 and 1)
are summarised by the mean and the sample standard deviation of each metric
over the runs of the group. `compare` returns (and `write` stores as
OUT/summary.json) every run's metrics and the groups' summaries, and
`markdown_table` shows the groups. The command line is launch/compare.py.
"""

import collections
import math
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import jax
import numpy as np

from jaxgen import evaluate
from jaxgen import losses
from jaxgen import reporting
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen.evaluation import in_training
from jaxgen.tasks import base

SWD_REPEATS = 8  # x 128 directions: the mean is stable to ~1% over seeds.
# Table columns first (others follow in name order); per-image "_std"
# spreads and the classifier's image count "n" stay in the JSON only.
_ORDER = ("swd", "fid", "kid", "precision", "recall", "is", "l1", "psnr",
          "ssim", "acc_real", "acc_generated", "acc_requested")


def held_out_images(test_ds) -> np.ndarray:
  """Every image of an unpaired test split, float32 [n, h, w, c] in [0, 1]."""
  return np.concatenate(list(in_training.real_images(test_ds, 100)))


def swd(fake: np.ndarray, real: np.ndarray, seed: int = 0) -> float:
  """Sliced Wasserstein distance of two image sets in [0, 1] (module doc).

  Args:
    fake: [n, h, w, c] generated images.
    real: [m, h, w, c] real images.
    seed: seed of the random directions.

  Returns:
    The mean over SWD_REPEATS sets of directions, on min(n, m) images.
  """
  n = min(len(fake), len(real))
  return float(np.mean([losses.sliced_wasserstein(
      fake[:n] * 2 - 1, real[:n] * 2 - 1,
      jax.random.fold_in(jax.random.key(seed), k))
                        for k in range(SWD_REPEATS)]))


def _generative(task, state, config, test_ds, extractor, num, batch_size,
                seed, out_dir, name, fake=None):
  # One set of images for every metric and the grid: the run's FID key
  # (evaluate.generated), so FID here is jaxgen-evaluate's, unless the
  # caller drew them (`select`).
  if fake is None:
    fake = evaluate.generated(task, state, config, num, batch_size)
  real = held_out_images(test_ds)
  found = {"swd": swd(fake, real, seed)}
  notes = []
  if out_dir:
    reporting.save_png(os.path.join(out_dir, f"samples_{name}.png"),
                       reporting.make_grid(fake[:64], 8))
  if extractor is not None:
    report = evaluate.evaluate_generative(task, state, config, test_ds,
                                          extractor, num, batch_size,
                                          images=fake)
    found.update(report["metrics"])
    notes += report["notes"]
  return found, notes


def _translation(task, state, config, test_ds, extractor, batch_size):
  found, notes = {}, []
  for direction in task.translations():
    part = evaluate.evaluate_translation(task, state, config, test_ds,
                                         extractor, batch_size, direction)
    suffix = f"_{direction}" if direction else ""
    found.update({f"{k}{suffix}": v for k, v in part["metrics"].items()})
    notes += [f"{direction}: {n}" if direction else n for n in part["notes"]]
  return found, notes


def evaluate_one(workdir: str, group: str, which: str = "latest",
                 step: Optional[int] = None, num: int = 2000,
                 batch_size: int = 64, seed: int = 0, extractor=None,
                 classifier_workdir: str = "",
                 out_dir: str = "",
                 truncation: Optional[float] = None,
                 select: Optional[str] = None,
                 candidates: int = 4) -> Dict:
  """Every metric of one run (see the module docstring).

  Args:
    workdir: the run's workdir.
    group: its group label.
    which: "latest" or "best" checkpoint.
    step: a specific step of `which` (default: the newest).
    num: generated images (generative tasks).
    batch_size: generation, translation and Inception batch size.
    seed: seed of the SWD directions (the images come from the run's own
      FID key, `evaluate.generated`).
    extractor: Inception feature extractor, or None for no FID.
    classifier_workdir: a classifier run for label-conditioned cGANs.
    out_dir: where to save a grid of the first 64 scored images ("" =
      none).
    truncation: GAN runs: sample with this `gan.truncation` (None: the
      stored one; jaxgen/tasks/gan.py).
    select: GAN runs: score samples that are each the best of `candidates`
      draws by the run's discriminator, "real" or "class"
      (`jaxgen.sample.draw` with seed config.seed; the classifier check
      too); None: the run's FID-key samples.
    candidates: draws per sample with `select`.

  Returns:
    {"workdir", "group", "task", "dataset", "step", "which", "metrics",
    "notes"}.
  """
  config, task, state, step, which, test_ds = evaluate.load_run(
      workdir, which, step, truncation)
  name = os.path.basename(os.path.normpath(workdir))
  if select is not None and not base.generates(task):
    raise evaluate.EvaluationError(
        f"--select picks among a GAN's samples; the {config.task!r} run in "
        f"{workdir} draws none.")
  if task.translations():
    found, notes = _translation(task, state, config, test_ds, extractor,
                                batch_size)
  elif base.generates(task):
    fake = None
    if select is not None:  # The run restored above, not a second time.
      r = run_lib.Run(workdir, config, task, state, step, which, {})
      fake = sample.draw(r, num, config.seed, batch_size, None, select,
                         candidates)
    found, notes = _generative(task, state, config, test_ds, extractor, num,
                               batch_size, seed, out_dir, name, fake)
  else:
    raise evaluate.EvaluationError(
        f"Task {config.task!r} of {workdir} neither generates nor translates "
        "images; nothing to compare.")
  label_cgan = config.data.get("num_classes", 0) and config.task == "cgan"
  if label_cgan or getattr(task, "num_classes", 0):
    if classifier_workdir:
      # pylint: disable-next=g-import-not-at-top
      from jaxgen.tasks import classifier
      found.update(classifier.evaluate_generated(
          classifier_workdir, workdir, batch_size, which=which, step=step)
                   if label_cgan else classifier.evaluate_class_samples(
                       classifier_workdir, workdir, num, batch_size, which,
                       step, truncation, select, candidates))
    else:
      notes.append("Classifier accuracy skipped: no classifier run given.")
  return {"workdir": os.path.abspath(workdir), "group": group,
          "task": config.task, "dataset": config.data.name, "step": step,
          "which": which, "metrics": found, "notes": notes}


def summarise(runs: Sequence[Dict]) -> Dict[str, Dict]:
  """Groups runs by label: the mean and spread of every metric.

  Args:
    runs: `evaluate_one` results.

  Returns:
    {group: {"runs": [workdirs], "n": count, "metrics": {name: {"mean",
    "std", "n"}}}}, groups in first-seen order; "std" is the sample
    standard deviation over the group's runs (None for a single run).
  """
  groups = collections.OrderedDict()
  for r in runs:
    groups.setdefault(r["group"], []).append(r)
  out = {}
  for label, members in groups.items():
    values = collections.defaultdict(list)
    for r in members:
      for k, v in r["metrics"].items():
        if isinstance(v, (int, float)) and math.isfinite(v):
          values[k].append(float(v))
    out[label] = {"runs": [r["workdir"] for r in members],
                  "n": len(members),
                  "metrics": {k: {"mean": float(np.mean(v)),
                                  "std": (float(np.std(v, ddof=1))
                                          if len(v) > 1 else None),
                                  "n": len(v)}
                              for k, v in sorted(values.items())}}
  return out


def _columns(groups: Dict[str, Dict]) -> List[str]:
  names = {k for g in groups.values() for k in g["metrics"]
           if not k.endswith("_std") and k != "n"}

  def rank(name):
    stem = name.rsplit("_", 1)[0] if name.endswith(
        ("_AtoB", "_BtoA")) else name
    return (_ORDER.index(stem) if stem in _ORDER else len(_ORDER), name)

  return sorted(names, key=rank)


def markdown_table(groups: Dict[str, Dict], digits: int = 4) -> str:
  """The groups as a Markdown table: one row per group, "mean ± std".

  Args:
    groups: `summarise` output.
    digits: significant digits.

  Returns:
    The table (header, separator and one line per group).
  """
  columns = _columns(groups)
  lines = ["| group | runs | " + " | ".join(columns) + " |",
           "|---|---|" + "---|" * len(columns)]
  for label, g in groups.items():
    cells = []
    for c in columns:
      m = g["metrics"].get(c)
      if m is None:
        cells.append("-")
      elif m["std"] is None:
        cells.append(f"{m['mean']:.{digits}g}")
      else:
        cells.append(f"{m['mean']:.{digits}g} ± {m['std']:.{digits - 2}g}")
    lines.append(f"| {label} | {g['n']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def compare(workdirs: Sequence[str], groups: Optional[Sequence[str]] = None,
            which: str = "latest", step: Optional[int] = None,
            num: int = 2000, batch_size: int = 64, seed: int = 0,
            fid: bool = True, resize_mode: str = "bilinear-tf",
            classifier_workdir: str = "", out_dir: str = "",
            truncation: Optional[float] = None,
            select: Optional[str] = None, candidates: int = 4) -> Dict:
  """Evaluates every run and summarises them by group.

  Args:
    workdirs: run folders.
    groups: a label per workdir (default: each run's folder name).
    which: "latest" or "best" checkpoint of every run.
    step: a specific step of `which` (default: the newest).
    num: generated images per generative run.
    batch_size: generation, translation and Inception batch size.
    seed: seed of the SWD directions (all runs). The generated images of
      a run come from its own FID key (`evaluate.generated`, as
      jaxgen-evaluate's), and FID, SWD and the sample grid use the same ones.
    fid: Inception metrics when the weights are available.
    resize_mode: Inception resize mode.
    classifier_workdir: a classifier run for label-conditioned cGANs.
    out_dir: folder for sample grids ("" = none).
    truncation: GAN runs: sample every run with this `gan.truncation`
      (None: each run's stored one).
    select: GAN runs: each sample the best of `candidates` draws by the
      run's discriminator ("real" or "class"; `evaluate_one`).
    candidates: draws per sample with `select`.

  Returns:
    {"runs": [evaluate_one results], "groups": summarise(runs), "table":
    markdown_table(groups), "notes": [...], "settings": {...}, "seconds"}.

  Raises:
    ValueError: `groups` not one label per workdir.
  """
  start = time.time()
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  groups = list(groups) if groups else names
  if len(groups) != len(workdirs):
    raise ValueError(f"{len(groups)} group labels for {len(workdirs)} "
                     "workdirs; give one label per workdir.")
  notes, extractor = [], None
  if fid:
    try:
      extractor = in_training.get_extractor(resize_mode, batch_size)
    except FileNotFoundError as e:  # weights.WeightsNotFoundError.
      notes.append(f"Inception metrics skipped: {str(e).splitlines()[0]}")
      logging.warning("No Inception metrics: %s", e)
  runs = []
  for workdir, group in zip(workdirs, groups):
    runs.append(evaluate_one(workdir, group, which, step, num, batch_size,
                             seed, extractor, classifier_workdir, out_dir,
                             truncation, select, candidates))
    logging.info("%s (%s, step %d): %s", workdir, group, runs[-1]["step"],
                 runs[-1]["metrics"])
  summary = summarise(runs)
  return {"runs": runs, "groups": summary, "table": markdown_table(summary),
          "notes": notes,
          "settings": {"which": which, "step": step, "num": num,
                       "seed": seed, "fid": extractor is not None,
                       "truncation": truncation, "select": select,
                       "candidates": candidates if select else 1,
                       "resize_mode": resize_mode if extractor else None},
          "seconds": round(time.time() - start, 1)}


def write(result: Dict, out_dir: str) -> str:
  """Writes OUT/summary.json (non-finite numbers as text); returns the path."""
  return evaluate.write_json(result, os.path.join(out_dir, "summary.json"))
