r"""The stability-toolbox studies: train each recipe with several seeds, then
compare them (launch/compare.py's table and summary).

  python launch/stability.py --study=siamese --out=runs/stability
  python launch/stability.py --study=pix2pix --seeds=0 --dry_run
  python launch/stability.py --study=siamese --recipes=baseline,diffaug_ema

Studies (the data is ../shared/data beside the repository, see its README):

  siamese      Siamese GAN on CIFAR-10 cats + dogs, width 32: baseline,
               DiffAugment, EMA, both; width 64 with EMA, sampled with
               recalibrated or with stored BatchNorm statistics, longer,
               with decaying learning rates, or with both rates doubled,
               tripled or quadrupled and decaying (the doubled also with
               DiffAugment, or with the hinge loss and a spectrally
               normalised D, or class-conditional with a projection D,
               G conditioned through its first layer or also through
               conditional batch norm);
               FID/KID of 2000 generated images against the 2000 test
               images, and for the class-conditional recipe the accuracy
               of a cat/dog classifier (trained first, once) on samples
               asked for each class.
  label_cgan   label-conditioned pix2pix on CIFAR cats/dogs (sketched on the
               fly): label channels ("concat") against a projection
               discriminator with class-conditional G normalisation, and
               projection with label swapping and an auxiliary image
               classifier; the accuracy of a classifier (trained first,
               once) on images generated with requested labels.
  pix2pix      pix2pix on CUFS at 128 px, validated on the stratified split
               (every subset): baseline, DiffAugment, multi-scale D with
               feature matching, 1.5 times the steps, a perceptual term,
               R1, hinge loss with spectral norm; L1/PSNR/SSIM and FID.
  cyclegan     CycleGAN face <-> sketch on CUFS at 64 px (the config's `cpu`
               recipe, the stratified split): baseline, DiffAugment;
               L1/PSNR/SSIM and FID per direction on the held-out pairs.
  signatures   DCGAN on the scanned signatures at 64 px, width 32: baseline,
               DiffAugment, DiffAugment + EMA (recalibrated BatchNorm
               statistics), DiffAugment + R1, DiffAugment + WGAN-GP,
               DiffAugment + hinge with a spectrally normalised D; SWD,
               FID/KID of 2000 generated images against the scans of the
               held-out signers (a fifth of the signers, never trained on).

Each run is `python -m jaxgen.main` in OUT/STUDY/RECIPE_sSEED with
`--config.seed=SEED`; a finished run is not trained again (the loop resumes
an interrupted one from its checkpoint), so rerunning the command continues
a study. --steps replaces every recipe's step budget (smoke tests). The
summary (launch/compare.py's) goes to OUT/STUDY/compare, or, for a selection
of recipes or seeds, to its own folder, e.g. OUT/STUDY/compare-ema-s0.
--truncation=0.7,0.5 (GAN studies: siamese, signatures) scores the runs
again with their sampling codes truncated at each bound, each into its own
folder, e.g. OUT/STUDY/compare-truncation0.7.
"""

import os
import subprocess
import sys
import time
from typing import List, Sequence, Tuple

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top
from jaxgen import cli
from jaxgen import compare as compare_lib
from jaxgen import configlib
from jaxgen import run as run_lib
# The study table beside this script (launch/ holds scripts, not a package).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stability_studies
# pylint: enable=g-import-not-at-top

Study = stability_studies.Study
STUDIES = stability_studies.STUDIES
DIFFAUG = stability_studies.DIFFAUG


def commands(study: Study, out: str, seeds: Sequence[int],
             steps: int = 0, recipes: Sequence[str] = ()
             ) -> List[Tuple[str, List[str]]]:
  """(workdir, argv) of every run of `study`: classifiers, pretrained, recipes.

  Args:
    study: the study.
    out: the study's output folder.
    seeds: the seeds of every recipe.
    steps: if > 0, every run's train.num_steps.
    recipes: the recipes to run (all if empty).

  Returns:
    A list of (workdir, command) pairs.
  """
  extra = [f"--config.train.num_steps={steps}"] if steps else []
  runs = []
  for name in ("classifier", "check_classifier"):
    spec = getattr(study, name)
    if spec:
      workdir = os.path.join(out, name)
      runs.append((workdir, _main(spec[0], workdir, [*spec[1:], *extra])))
  chosen = {name: overrides for name, overrides in study.recipes.items()
            if not recipes or name in recipes}
  for name, spec in study.pretrained.items():
    # Only the runs that a chosen recipe builds on.
    if any("{out}/" + name in o for v in chosen.values() for o in v):
      workdir = os.path.join(out, name)
      runs.append((workdir, _main(spec[0], workdir, [*spec[1:], *extra])))
  for name, overrides in chosen.items():
    overrides = [o.replace("{out}", out) for o in overrides]
    for seed in seeds:
      workdir = os.path.join(out, f"{name}_s{seed}")
      runs.append((workdir, _main(
          study.config, workdir,
          [*study.base, *overrides, f"--config.seed={seed}", *extra])))
  return runs


def _main(config: str, workdir: str, overrides: Sequence[str]) -> List[str]:
  return [sys.executable, "-m", "jaxgen.main",
          f"--config={os.path.join(ROOT, config)}", f"--workdir={workdir}",
          *overrides]


def _finished(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, "loss.png"))


def compare_folder(recipes: Sequence[str], seeds: Sequence[int],
                   prefix: str = "compare") -> str:
  """The summary folder's name for a selection of a study's runs.

  `prefix` alone for every recipe with the default seeds 0 and 1; a
  selection gets its own folder, so that scoring one new recipe does not
  overwrite the summary of the others.

  Args:
    recipes: the --recipes selection ([] for all of the study's).
    seeds: the seeds.
    prefix: "compare", or "compare_check" for the check classifier's.

  Returns:
    e.g. "compare", "compare-diffaug+ema-s0".
  """
  if not recipes and list(seeds) == [0, 1]:
    return prefix
  return (f"{prefix}-{'+'.join(sorted(recipes)) or 'all'}-s"
          + "+".join(str(s) for s in seeds))


def define(fv: flags.FlagValues, argv: List[str]):
  """The flags (see the module docstring)."""
  del argv
  flags.DEFINE_enum("study", None, sorted(STUDIES), "Which study.",
                    flag_values=fv)
  flags.DEFINE_string("out", "runs/stability", "Output folder (the study's "
                      "runs go to OUT/STUDY).", flag_values=fv)
  flags.DEFINE_list("seeds", ["0", "1"], "Seeds of every recipe.",
                    flag_values=fv)
  flags.DEFINE_list("recipes", [], "Recipes to run and compare (default: "
                    "all of the study's).", flag_values=fv)
  flags.DEFINE_integer("steps", 0, "If > 0, every run's step budget.",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_bool("no_fid", False, "Skip Inception metrics.",
                    flag_values=fv)
  flags.DEFINE_bool("dry_run", False, "Print the commands only.",
                    flag_values=fv)
  flags.DEFINE_list("truncation", [], "GAN studies: also score the runs "
                    "with their sampling codes truncated at each of these "
                    "bounds (jaxgen/tasks/gan.py), each in its own folder.",
                    flag_values=fv)
  flags.mark_flags_as_required(["study"], flag_values=fv)


def truncations(name: str, values: Sequence[str]) -> List[float]:
  """The --truncation bounds, checked against the study's task.

  Args:
    name: the study's name.
    values: the flag's strings.

  Returns:
    The bounds as floats.

  Raises:
    cli.UsageError: a value that is not a bound, or a study whose runs
      draw no latent codes.
  """
  if not values:
    return []
  try:
    bounds = [float(v) for v in values]
  except ValueError as e:
    raise cli.UsageError(f"--truncation must be numbers, got {values}."
                         ) from e
  config = configlib.load_config_file(
      os.path.join(ROOT, STUDIES[name].config))
  for t in bounds:
    try:
      run_lib.with_truncation(config, t, f"the {name} study's runs")
    except run_lib.RunError as e:
      raise cli.UsageError(f"--truncation: {e}") from e
  return bounds


def run(fv: flags.FlagValues):
  """Trains the study's missing runs, then compares them."""
  study = STUDIES[fv.study]
  out = os.path.join(fv.out, fv.study)
  try:
    seeds = [int(s) for s in fv.seeds]
  except ValueError as e:
    raise cli.UsageError(f"--seeds must be integers, got {fv.seeds}.") from e
  unknown = sorted(set(fv.recipes) - set(study.recipes))
  if unknown:
    raise cli.UsageError(f"--recipes: {', '.join(unknown)} not in study "
                         f"{fv.study} (its recipes: "
                         f"{', '.join(study.recipes)}).")
  bounds = truncations(fv.study, fv.truncation)
  runs = commands(study, out, seeds, fv.steps, fv.recipes)
  for workdir, cmd in runs:
    if fv.dry_run:
      print(" ".join(cmd))
      continue
    if _finished(workdir):
      print(f"{workdir}: finished earlier")
      continue
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    with open(os.path.join(workdir, "train.log"), "a") as log:
      code = subprocess.call(cmd, cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT)
    if code:
      raise cli.UserError(f"{workdir} failed (exit {code}); see its "
                          "train.log. Rerun to resume.")
    minutes = (time.time() - start) / 60
    with open(os.path.join(workdir, "wall_minutes.txt"), "w") as f:
      f.write(f"{minutes:.1f}\n")
    print(f"{workdir}: {minutes:.1f} min")
  if fv.dry_run:
    return
  helpers = {"classifier", "check_classifier", *study.pretrained}
  recipes = [(w, os.path.basename(w).rsplit("_s", 1)[0])
             for w, _ in runs if os.path.basename(w) not in helpers]
  # (output folder, classifier workdir or "", with FID, heading): the check
  # classifier scores the same runs again, without Inception metrics.
  scorings = [(compare_folder(fv.recipes, seeds),
               os.path.join(out, "classifier") if study.classifier else "",
               not fv.no_fid, "")]
  if study.check_classifier:
    check = os.path.join(out, "check_classifier")
    scorings.append((compare_folder(fv.recipes, seeds, "compare_check"),
                     check, False,
                     f"Scored by {check} (another architecture):\n"))
  scorings = [(*s, None) for s in scorings] + [
      (f"{compare_folder(fv.recipes, seeds)}-truncation{t:g}", "",
       not fv.no_fid, f"Sampling codes truncated to ±{t:g}:\n", t)
      for t in bounds]
  for folder, classifier, fid, heading, truncation in scorings:
    folder = os.path.join(out, folder)
    result = compare_lib.compare(
        [w for w, _ in recipes], [g for _, g in recipes], fid=fid,
        classifier_workdir=classifier, out_dir=folder, truncation=truncation,
        **study.compare)
    path = compare_lib.write(result, folder)
    print(heading + result["table"])
    print(f"Wrote {path}")


def main(argv=None) -> int:
  """The command line; returns the exit status."""
  return cli.run(run, define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
