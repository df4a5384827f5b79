r"""The former Siamese-GAN comparison: launch/compare.py, same flags.

  python launch/compare_siamese.py \
      --workdirs=runs/sgan,runs/sgan_plain --num=2000 --out=runs/compare

compares the runs (every run its own group unless --group is given) as
launch/compare.py does: SWD, and FID/KID/precision/recall when the Inception
weights are present, on each run's held-out split; OUT/summary.json and
OUT/samples_<run>.png.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  sys.exit(compare.main())
