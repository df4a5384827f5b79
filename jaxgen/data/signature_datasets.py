"""Signature datasets: real scans from a folder, or procedural signatures.

Both are split by writer (a writer's images are all in train or all in test),
so held-out metrics measure generalisation to new writers.
"""

import ml_collections
import numpy as np

from jaxgen.data import augment as augment_lib
from jaxgen.data import pipeline
from jaxgen.data import signatures
from jaxgen.data import synth_signatures


def _augmenter(data_cfg):
  aug_cfg = data_cfg.get("augment", None)
  if aug_cfg is None:
    return None
  aug_cfg = aug_cfg.to_dict() if hasattr(aug_cfg, "to_dict") else dict(aug_cfg)
  if not any(aug_cfg.values()):
    return None

  def fn(elem, rng: np.random.Generator):
    out = dict(elem)
    out["image"] = augment_lib.augment_from_config(elem["image"], rng, aug_cfg)
    return out
  return fn


@pipeline.register("synthetic_signatures")
def synthetic(data_cfg: ml_collections.ConfigDict, split: str):
  """Procedural signatures (jaxgen.data.synth_signatures); no files needed."""
  train, test = synth_signatures.split_writers(
      data_cfg.num_writers, data_cfg.test_fraction, data_cfg.seed)
  writers = train if split == "train" else test
  src = synth_signatures.SyntheticSignatures(
      writers, per_writer=data_cfg.per_writer, res=data_cfg.res,
      seed=data_cfg.seed)
  return pipeline.Dataset(
      src, _augmenter(data_cfg) if split == "train" else None,
      info=dict(writers=len(writers), channels=1))


@pipeline.register("signatures")
def folder(data_cfg: ml_collections.ConfigDict, split: str):
  """Real scans: `data.root` holds one sub-folder per signer."""
  if not data_cfg.root:
    raise ValueError(
        "config.data.root is empty: point it at a folder with one sub-folder "
        "of signature images per signer (e.g. --config.data.root="
        "../shared/data/signatures), or use the embedded procedural data "
        "with --config=configs/<task>.py:demo.")
  src = signatures.SignatureFolder(
      data_cfg.root, split=split, res=data_cfg.res, invert=data_cfg.invert,
      binarize=data_cfg.binarize, test_fraction=data_cfg.test_fraction,
      seed=data_cfg.seed, on_bad_file=data_cfg.on_bad_file)
  return pipeline.Dataset(
      src, _augmenter(data_cfg) if split == "train" else None,
      info=dict(writers=len(getattr(src, "signers", [])), channels=1))
