r"""Compares trained runs of any family on their own data's held-out split.

  python launch/compare.py \
      --workdirs=runs/sgan_s0,runs/sgan_s1,runs/plain_s0,runs/plain_s1 \
      --group=siamese,siamese,plain,plain --num=2000 --out=runs/compare

Runs with the same --group label (e.g. one recipe trained with seed 0 and 1)
are summarised by mean ± standard deviation; without --group every run is
its own group. Each run is restored from its workdir (--which=latest|best,
--step=N) with its stored config and measured on its data config's test
split (jaxgen/compare.py says what):

  gan, siamese_gan, vae  SWD always; FID, KID, precision, recall of --num
                         generated images when the Inception weights are
                         present (jaxgen.evaluation.weights) and not
                         --no_fid;
  cgan, cyclegan         L1, PSNR, SSIM on the paired test split (per
                         direction for CycleGAN) and FID/KID of the outputs;
  label cGAN             also the accuracy of a trained classifier
                         (--classifier=WORKDIR, configs/classifier.py) on
                         real photos and on photos generated with the true
                         and with requested labels;
  class-conditional      (siamese_gan :cond) the same classifier's accuracy
  Siamese GAN            on the real test images and on --num samples asked
                         for each class in turn.

Prints a Markdown table of the groups and writes OUT/summary.json (every
run's metrics and notes, and the groups' mean/std) and, for generative
runs, OUT/samples_<run>.png: the first 64 of the images every metric
scored (a run's own FID key, so its FID equals jaxgen-evaluate's).
--select=real|class --candidates=K scores GAN samples that are each the
best of K draws by the run's own discriminator instead (jaxgen/sample.py;
the classifier check's samples too).
"""

import os
import sys
from typing import List

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

# pylint: disable=g-import-not-at-top
from jaxgen import cli
from jaxgen import compare as compare_lib
from jaxgen.evaluation import resize as resize_lib
# pylint: enable=g-import-not-at-top


def define(fv: flags.FlagValues, argv: List[str]):
  """The flags (see the module docstring)."""
  del argv
  flags.DEFINE_list("workdirs", None, "Run folders to compare.",
                    flag_values=fv)
  flags.DEFINE_list("group", None, "A group label per workdir (runs of one "
                    "label are averaged); default: each run's folder name.",
                    flag_values=fv)
  flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
  flags.DEFINE_integer("num", 2000, "Generated images per generative run.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_enum("which", "latest", ["latest", "best"], "Checkpoint.",
                    flag_values=fv)
  flags.DEFINE_integer("step", None, "A specific step of --which (default: "
                       "the newest).", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of SWD's random directions (the "
                       "same for every run); a run's images come from its "
                       "own FID key, as with jaxgen-evaluate.",
                       flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "Generation, translation and "
                       "Inception batch size.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_bool("no_fid", False, "Skip Inception metrics.",
                    flag_values=fv)
  flags.DEFINE_enum("resize", "bilinear-tf", list(resize_lib.RESIZE_MODES),
                    "Inception resize mode.", flag_values=fv)
  flags.DEFINE_string("classifier", "", "Classifier workdir for label-"
                      "conditioned cGAN and class-conditional GAN runs.",
                      flag_values=fv)
  cli.define_truncation_flag(fv)
  cli.define_select_flags(fv)
  flags.mark_flags_as_required(["workdirs", "out"], flag_values=fv)


def run(fv: flags.FlagValues):
  """Compares the runs, prints the table and writes the summary."""
  if fv.group and len(fv.group) != len(fv.workdirs):
    raise cli.UsageError(f"--group has {len(fv.group)} labels for "
                         f"{len(fv.workdirs)} --workdirs; give one each.")
  os.makedirs(fv.out, exist_ok=True)
  result = compare_lib.compare(
      fv.workdirs, fv.group, fv.which, fv.step, fv.num, fv.batch_size,
      fv.seed, not fv.no_fid, fv.resize, fv.classifier, fv.out,
      fv.truncation, fv.select, fv.candidates)
  path = compare_lib.write(result, fv.out)
  print(result["table"])
  for note in result["notes"]:
    print(f"Note: {note}")
  print(f"Wrote {path} ({result['seconds']:.1f} s)")


def main(argv=None) -> int:
  """The command line; returns the exit status."""
  return cli.run(run, define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
