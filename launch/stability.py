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
from typing import Dict, List, NamedTuple, Sequence, Tuple

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top
from jaxgen import cli
from jaxgen import compare as compare_lib
from jaxgen import configlib
from jaxgen import run as run_lib
# pylint: enable=g-import-not-at-top

DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
CIFAR = os.path.join(DATA, "cifar10_catdog")
SIGNATURES = os.path.join(DATA, "signatures")
DIFFAUG = "--config.gan.diffaug=color,translation,cutout"
HINGE_SN = ("--config.gan.loss=hinge", "--config.gan.d_spectral_norm=true")
# SNGAN's discriminator (Miyato et al. 2018) for the DCGAN families: hinge
# loss, spectral norm, no BatchNorm.
SNGAN_D = (*HINGE_SN, "--config.model.d_norm=none")
# Label swapping with a projection D and an auxiliary classifier that starts
# from the study's pretrained aux_classifier run (its weight per recipe).
SWAP_INIT = ("--config.model.label_injection=projection",
             "--config.gan.label_swap=0.5",
             "--config.gan.aux_classifier_init={out}/aux_classifier")


# The evaluation classifier of CIFAR cats vs dogs (32 px photos).
CIFAR_CLASSIFIER = ("configs/classifier.py:steps=3000",
                    f"--config.data.root={CIFAR}")


class Study(NamedTuple):
  config: str                       # configs/<file>.py:variant
  base: Tuple[str, ...]             # Overrides of every recipe.
  recipes: Dict[str, Tuple[str, ...]]
  compare: Dict[str, object]        # compare_lib.compare keyword arguments.
  classifier: Tuple[str, ...] = ()  # Config + overrides of a classifier run.
  # A second evaluation classifier of another architecture: G is trained
  # against a classifier of the first one's architecture (another seed),
  # and class cues that fool that architecture could fool its twin too.
  check_classifier: Tuple[str, ...] = ()
  # Runs that recipes build on (name -> config + overrides), trained after
  # the classifier; "{out}" in a recipe's override is the study's folder.
  pretrained: Dict[str, Tuple[str, ...]] = {}


# The Siamese GAN at the config's own widths (DCGAN's 64, four times the
# compute of width 32 per step) with an EMA generator.
WIDTH64_EMA = ("--config.model.g_width=64", "--config.model.d_width=64",
               "--config.gan.ema_decay=0.999")


def both_optims(**fields):
  """Overrides that set `fields` in both g_optim and d_optim."""
  return tuple(f"--config.{opt}.{field}={value}"
               for opt in ("g_optim", "d_optim")
               for field, value in fields.items())


def linear_decay(start: float):
  """Overrides that decay both learning rates linearly to 0 from the
  fraction `start` of the run's steps (jaxgen/optim.py "linear")."""
  return both_optims(schedule="linear", decay_start=start)


def width64_decay_at(lr: str):
  """width64_ema_decay with both learning rates at `lr`, evaluated and
  sampled every 5 epochs (no effect on training; less of the budget spent
  evaluating)."""
  return (*WIDTH64_EMA, "--config.train.num_steps=7200",
          *linear_decay(0.8334), *both_optims(lr=lr),
          "--config.train.eval_every=780", "--config.train.sample_every=780")


STUDIES = {
    "siamese": Study(
        config="configs/siamese_gan.py:width=32,steps=6000",
        # In-training FID (5000 images every 10 epochs) would cost more than
        # the training at this size: the runs keep the latest checkpoint,
        # which compare.py scores.
        base=(f"--config.data.root={CIFAR}", "--config.data.source=folder",
              "--config.eval.fid_every=0",
              "--config.train.best_metric=eval/swd"),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
            "ema": ("--config.gan.ema_decay=0.999",),
            "diffaug_ema": (DIFFAUG, "--config.gan.ema_decay=0.999"),
            "width64_ema": WIDTH64_EMA,
            # The same runs sampled with G's stored BatchNorm averages (the
            # only way before gan.bn_recalibrate; training is identical).
            "width64_ema_running_bn": (*WIDTH64_EMA,
                                       "--config.gan.bn_recalibrate=0"),
            # 1.5 times the steps (58 epochs).
            "width64_ema_9000": (*WIDTH64_EMA,
                                 "--config.train.num_steps=9000"),
            # 7200 steps (the 30-40 min budget alone), the learning rates of
            # G and D constant for 6000 (int(7200 * 0.8334)), then linearly
            # to 0; or from step 4680 (0.65).
            "width64_ema_decay": (*WIDTH64_EMA,
                                  "--config.train.num_steps=7200",
                                  *linear_decay(0.8334)),
            "width64_ema_decay_4680": (*WIDTH64_EMA,
                                       "--config.train.num_steps=7200",
                                       *linear_decay(0.65)),
            # width64_ema_decay with both learning rates doubled to 4e-4:
            # FID still fell by ~10 between 6000 and 9000 constant steps, so
            # the runs are far from converged.
            "width64_ema_decay_lr4": width64_decay_at("4e-4"),
            # The same at 6e-4 and 8e-4: 4e-4 beat 2e-4 by ~11 FID, so the
            # pace of learning still limits these runs.
            "width64_ema_decay_lr6": width64_decay_at("6e-4"),
            "width64_ema_decay_lr8": width64_decay_at("8e-4"),
            # width64_ema_decay_lr4 with DiffAugment: by its last 1000 steps
            # D scores the real images ~0.97 and the fakes ~0.02 (d_real,
            # d_fake), the overfitting that augmentation counters.
            "width64_ema_decay_lr4_diffaug": (*width64_decay_at("4e-4"),
                                              DIFFAUG),
            # width64_ema_decay_lr4 with the hinge loss and a spectrally
            # normalised encoder and heads without BatchNorm (SNGAN, Miyato
            # et al. 2018): D's Lipschitz bound in place of augmentation
            # against its late overconfidence.
            "width64_ema_decay_lr4_hinge_sn": (*width64_decay_at("4e-4"),
                                               *SNGAN_D),
            # width64_ema_decay_lr4 class-conditional (configs/
            # siamese_gan.py:cond): G asked for cat or dog, a projection D,
            # so that each sample must look like its class to D; scored
            # also by a cat/dog classifier on samples asked for each class.
            "width64_ema_decay_lr4_cond": (*width64_decay_at("4e-4"),
                                           "--config.model.num_classes=2"),
            # The same with a per-class scale and shift after each of G's
            # BatchNorms (conditional batch norm): without it, samples of
            # one code asked for cat and for dog hardly differ.
            "width64_ema_decay_lr4_cond_norm": (
                *width64_decay_at("4e-4"), "--config.model.num_classes=2",
                "--config.model.g_class_norm=true"),
        },
        compare=dict(num=2000),
        classifier=CIFAR_CLASSIFIER),
    "label_cgan": Study(
        # Width 32: a quarter of the compute of the config's 64, so that a
        # run fits the CPU budget of the README's Results.
        config="configs/cgan.py:labels,steps=4000",
        base=(f"--config.data.root={CIFAR}", "--config.model.g_width=32",
              "--config.model.d_width=32", "--config.model.max_width=256"),
        recipes={
            "concat": (),
            "projection": ("--config.model.label_injection=projection",),
            # Half the examples ask for the other class; an image-only
            # classifier's loss on G's outputs (label_following.py).
            "projection_swap": ("--config.model.label_injection=projection",
                                "--config.gan.label_swap=0.5",
                                "--config.gan.aux_classifier=1.0"),
            # The same with five times the classifier's weight, and
            # DiffAugment before D and the classifier (robust class cues).
            "projection_swap_aug": (
                "--config.model.label_injection=projection",
                "--config.gan.label_swap=0.5",
                "--config.gan.aux_classifier=5.0", DIFFAUG),
            # projection_swap with the auxiliary classifier starting from a
            # trained one (another seed than the evaluation classifier).
            "projection_swap_init": (*SWAP_INIT,
                                     "--config.gan.aux_classifier=1.0"),
            # projection_swap_init with five times the classifier's weight.
            "projection_swap_init5": (*SWAP_INIT,
                                      "--config.gan.aux_classifier=5.0"),
            # The same with the pretrained classifier fine-tuned at a tenth
            # of its pace: at 1e-3 on batches of 8 it forgets (its accuracy
            # on the training photos falls from 84% to ~74%).
            "projection_swap_init5_slow": (
                *SWAP_INIT, "--config.gan.aux_classifier=5.0",
                "--config.aux_optim.lr=1e-4"),
        },
        compare=dict(num=2000),
        classifier=CIFAR_CLASSIFIER,
        check_classifier=("configs/classifier.py:steps=3000",
                          f"--config.data.root={CIFAR}",
                          "--config.model.width=16",
                          "--config.model.max_width=128", "--config.seed=2"),
        pretrained={"aux_classifier": ("configs/classifier.py:steps=3000",
                                       f"--config.data.root={CIFAR}",
                                       "--config.seed=1")}),
    "pix2pix": Study(
        # Width 16 at 128 px: 1600 steps of 8 are ~71 epochs of the 180
        # training pairs, within the CPU budget of the README's Results.
        config="configs/cgan.py:cufs,res=128,steps=1600",
        # DiffAugment off unless a recipe asks (cufs turns it on since
        # this study measured it).
        base=("--config.model.g_width=16", "--config.model.d_width=16",
              "--config.model.max_width=128", "--config.gan.diffaug="),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
            "multiscale_fm": ("--config.gan.d_scales=2",
                              "--config.gan.feature_matching=10"),
            # The baseline trained 1.5 times as long (107 epochs).
            "baseline_2400": ("--config.train.num_steps=2400",),
            # L1 on early Inception features beside the pixel L1
            # (jaxgen/perceptual.py; needs the FID weights).
            "perceptual": ("--config.gan.perceptual_weight=10",),
            # Lazy R1 on the real pairs (gamma 1, every 16 D updates).
            "r1": ("--config.gan.r1_weight=1.0",),
            # Hinge loss with a spectrally normalised D.
            "hinge_sn": HINGE_SN,
        },
        compare=dict(num=2000)),
    "cyclegan": Study(
        # The config's CPU recipe (64 px, ngf/ndf 32, ResNet-6, batch 1) on
        # CUFS with the stratified split of the pix2pix study: 180 training
        # photos and sketches, pairing ignored, 12 constant + 12 decay
        # epochs (4320 steps, within the budget of the README's Results);
        # the 31 held-out pairs scored per direction.
        config="configs/cyclegan.py:cpu,cufs,epochs=12",
        base=(),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
        },
        compare=dict()),
    "signatures": Study(
        # Width 32 at 64 px: 2000 steps of 64 are 500 epochs of the 274
        # training scans (the signers not held out), within the budget.
        config="configs/gan.py:res=64,steps=2000",
        # DiffAugment off unless a recipe asks (the real-data config turns
        # it on since this study measured it).
        base=(f"--config.data.root={SIGNATURES}", "--config.gan.diffaug=",
              "--config.model.g_width=32", "--config.model.d_width=32",
              "--config.model.max_width=256",
              "--config.train.eval_every=500",
              "--config.train.sample_every=500",
              "--config.train.checkpoint_every=500"),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
            # EMA weights sampled with BatchNorm statistics of their own
            # (the Siamese study measured the stored averages worse).
            "diffaug_ema": (DIFFAUG, "--config.gan.ema_decay=0.999",
                            "--config.gan.bn_recalibrate=512"),
            # Lazy R1 on the real scans (gamma 1, every 16 D updates, as in
            # the pix2pix study) on top of DiffAugment.
            "diffaug_r1": (DIFFAUG, "--config.gan.r1_weight=1.0"),
            # WGAN-GP as its paper trains it (Gulrajani et al. 2017): the
            # Wasserstein critic loss, gradient penalty 10, five critic
            # updates per G update, Adam 1e-4 with betas (0, 0.9), a
            # critic without BatchNorm (per-example LayerNorm); with
            # DiffAugment, which beat the baseline in this study.
            "diffaug_wgan_gp": (
                DIFFAUG, "--config.gan.loss=wgan", "--config.gan.gp_weight=10",
                "--config.gan.d_steps=5", "--config.model.d_norm=layer",
                *both_optims(lr=1e-4, b1=0.0, b2=0.9)),
            # Hinge loss with a spectrally normalised D without BatchNorm
            # (SNGAN, Miyato et al. 2018), on top of DiffAugment; the
            # config's Adam rates and betas, one D update per G update.
            "diffaug_hinge_sn": (DIFFAUG, *SNGAN_D),
        },
        # 2000 generated scans against the held-out signers' (all of them).
        compare=dict(num=2000)),
}


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
