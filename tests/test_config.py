"""Config files and argument parsing."""

import glob
import os

import pytest

from jaxgen import configlib
from jaxgen import tasks

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                          "configs")
CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))


load = configlib.load_config_module


def test_parse_arg_types_and_flags():
  c = configlib.parse_arg("demo,res=128,lr=0.5,name=x", demo=False, res=64,
                          lr=1.0, name="")
  assert c.demo is True and c.res == 128 and c.lr == 0.5 and c.name == "x"
  assert configlib.parse_arg(None, res=64).res == 64


def test_parse_arg_unknown_option_lists_valid():
  with pytest.raises(ValueError, match="valid options: demo, res"):
    configlib.parse_arg("dmeo", demo=False, res=64)
  with pytest.raises(ValueError, match="needs a value"):
    configlib.parse_arg("res", res=64)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("variant", [None, "demo", "tiny", "bench"])
def test_every_config_variant_builds(path, variant):
  config = load(path).get_config(variant)
  assert config.task in tasks.known_tasks()
  # A length in steps, or in epochs (turned into steps by the loop).
  assert config.train.num_steps > 0 or config.train.num_epochs > 0
  assert config.train.batch_size > 0
  # Everything the loop reads is present.
  for key in ("log_every", "eval_every", "sample_every", "checkpoint_every",
              "keep", "best_metric", "num_samples"):
    assert key in config.train
  assert load(path).__doc__ and "python -m jaxgen.main" in load(path).__doc__


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("variant", [None, "demo", "tiny"])
def test_config_depends_on_its_argument_only(path, variant, monkeypatch,
                                             tmp_path):
  """The same argument gives the same config whatever this machine holds
  (Inception weights, the data folders beside the repository)."""
  here = load(path).get_config(variant).to_dict()
  monkeypatch.setenv("JAXGEN_INCEPTION_WEIGHTS", str(tmp_path / "missing"))
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.setattr(os.path, "isdir", lambda p: False)
  monkeypatch.setattr(os.path, "exists", lambda p: False)
  assert load(path).get_config(variant).to_dict() == here


def test_siamese_demo_is_synthetic_unless_asked_for_cifar():
  module = load(os.path.join(CONFIG_DIR, "siamese_gan.py"))
  assert module.get_config("demo").data.source == "synthetic"
  cifar = module.get_config("demo,cifar").data
  assert cifar.source == "folder"
  assert cifar.root.endswith(os.path.join("data", "cifar10_catdog"))


def test_vae_demo_latent_map_unless_asked_for_a_vector():
  module = load(os.path.join(CONFIG_DIR, "vae.py"))
  m = module.get_config("demo").model
  assert (m.latent_res, m.latent_dim) == (8, 8)
  m = module.get_config("demo,vector").model
  assert (m.latent_res, m.latent_dim) == (0, 128)
  assert module.get_config(None).model.latent_res == 0


def test_gan_diffaug_on_real_scans_only():
  """The measured recipe (README "Results") for real signatures; the
  procedural variants and the PyTorch benchmark stay without it."""
  module = load(os.path.join(CONFIG_DIR, "gan.py"))
  assert module.get_config(None).gan.diffaug == "color,translation,cutout"
  for variant in ("demo", "tiny", "bench"):
    assert not module.get_config(variant).gan.diffaug, variant


def test_unknown_task_lists_known():
  config = load(os.path.join(CONFIG_DIR, "vae.py")).get_config("tiny")
  with config.unlocked():
    config.task = "diffusion"
  with pytest.raises(ValueError, match="known tasks: .*gan.*vae"):
    tasks.get_task(config)
