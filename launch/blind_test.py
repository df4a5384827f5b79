r"""A blind naming test of a run's samples beside real images.

Make a test (real held-out images and samples shuffled into one numbered
grid; the key in a file the judge does not open):

  python launch/blind_test.py --workdir=runs/sgan --num=32 --out=runs/blind

(--select=class --candidates=5 makes each sample the best of five draws by
the run's discriminator, jaxgen/sample.py), then look at
runs/blind/grid.png only, write down the tiles you can name
with what you see, and score them:

  python launch/blind_test.py --key=runs/blind/key.json \
      --answers="3:cat,7:dog,12,40:cat"

which prints, for the real and the generated tiles, how many were named and
how many of those named with a class were named right (a real tile's class,
or the class a class-conditional run was asked for), and writes
runs/blind/score.json. jaxgen/evaluation/blind.py says why and how.
"""

import os
import sys
from typing import List

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

# pylint: disable=g-import-not-at-top
from jaxgen import cli
from jaxgen.evaluation import blind
# pylint: enable=g-import-not-at-top


def define(fv: flags.FlagValues, argv: List[str]):
  """The flags (see the module docstring)."""
  del argv
  cli.define_run_flags(fv, "Make a test of this generative run.")
  cli.define_select_flags(fv)
  flags.DEFINE_string("out", None, "Where to write grid.png and key.json.",
                      flag_values=fv)
  flags.DEFINE_integer("num", 32, "Real tiles, and as many generated ones.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Picks the real images, the samples and "
                       "the order.", flag_values=fv)
  flags.DEFINE_integer("columns", 8, "Tiles per row.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("scale", None, "Enlargement of each tile (default: "
                       "to about 128 px a side).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_string("key", None, "Score answers against this key.json.",
                      flag_values=fv)
  flags.DEFINE_string("answers", None, "The tiles named, e.g. "
                      "'3:cat,7:dog,12' ('none' for no tile).",
                      flag_values=fv)


def _percent(part, whole) -> str:
  return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "-"


def run(fv: flags.FlagValues):
  """Makes a test or scores one, as the flags say."""
  making = fv.workdir is not None or fv.out is not None
  scoring = fv.key is not None or fv.answers is not None
  if making == scoring or (making and not (fv.workdir and fv.out)) or (
      scoring and not (fv.key and fv.answers is not None)):
    raise cli.UsageError("Give --workdir and --out to make a test, or --key "
                         "and --answers to score one.")
  if making:
    test = blind.make_test(fv.workdir, fv.num, fv.seed, fv.which, fv.step,
                           fv.select, fv.candidates)
    paths = blind.write_test(test, fv.out, fv.columns, fv.scale)
    print(f"Judge {paths['grid']} ({len(test.key)} tiles) without opening "
          f"{paths['key']}; then score with --key={paths['key']} "
          "--answers=...")
    return
  result = blind.score_file(fv.key, fv.answers)
  print("| tiles | named | named with the right class |")
  print("|---|---|---|")
  for source, s in result["scores"].items():
    print(f"| {source} | {_percent(s['named'], s['tiles'])} | "
          f"{_percent(s['class_right'], s['with_class'])} |")


def main(argv=None) -> int:
  """The command line; returns the exit status."""
  return cli.run(run, define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
