"""Helpers shared by the files in configs/: argument parsing and defaults.

A config file's `get_config(arg)` receives whatever follows the colon in
`--config=configs/vae.py:demo,res=64`. `parse_arg` turns that string into a
ConfigDict of typed options, with bare words as boolean flags (big_vision
style).
"""

import os

import ml_collections


def parse_arg(arg, lazy=False, **spec):
  """Parses "a,b=3,c=x" against defaults in `spec`.

  Args:
    arg: the string after the colon, or None.
    lazy: if True, unknown keys are accepted as strings.
    **spec: option names with their default values; the default's type is
      used to parse the given value.

  Returns:
    A ConfigDict with every option of `spec` (and given lazy ones).

  Raises:
    ValueError: for an unknown option, naming the valid ones.
  """
  out = ml_collections.ConfigDict(dict(spec))
  if not arg:
    return out
  for item in arg.split(","):
    if not item:
      continue
    key, has_value, value = item.partition("=")
    if key not in spec and not lazy:
      raise ValueError(
          f"Unknown config option {key!r} in {arg!r}; valid options: "
          f"{', '.join(sorted(spec))}.")
    default = spec.get(key, "")
    if not has_value:
      if not isinstance(default, bool) and key in spec:
        raise ValueError(f"Config option {key!r} needs a value ({key}=...).")
      out[key] = True
      continue
    if isinstance(default, bool):
      lowered = value.lower()
      if lowered not in ("true", "false", "1", "0"):
        raise ValueError(f"Config option {key!r} takes true/false, got "
                         f"{value!r}.")
      out[key] = lowered in ("true", "1")
    elif isinstance(default, int):
      out[key] = int(value)
    elif isinstance(default, float):
      out[key] = float(value)
    else:
      out[key] = value
  return out


def train_defaults(**overrides) -> ml_collections.ConfigDict:
  """Loop settings shared by every task (see jaxgen/train.py).

  Args:
    **overrides: values that replace the defaults.

  Returns:
    A ConfigDict for `config.train`.
  """
  c = ml_collections.ConfigDict(dict(
      batch_size=64,
      num_steps=10_000,       # Total optimisation steps (the loop's length).
      # > 0: train this many epochs of the training split instead; the loop
      # sets num_steps (and steps_per_epoch) from the data before the task
      # is built, and stores them with the config.
      num_epochs=0,
      steps_per_epoch=0,      # Set by the loop; 0 = not known yet.
      # Intervals in steps; a value <= 0 means once per epoch.
      log_every=50,
      eval_every=1000,
      eval_batches=-1,        # -1: the whole test split.
      sample_every=1000,
      num_samples=64,         # Images in a sample grid.
      checkpoint_every=1000,  # Also saved at the end.
      # Also save at every epoch end: off, because an epoch of a small
      # dataset is a few steps (the 274 real training signatures: 4 of
      # 64), and saves that often cost more than the training. Epoch-based
      # configs (CycleGAN) use checkpoint_every <= 0 instead.
      checkpoint_at_epoch_end=False,
      keep=3,                 # Keep the last k checkpoints...
      best_metric="",         # ...and the best by this eval metric ("" = off).
      best_mode="min",
      data_threads=2,
      prefetch=4,
  ))
  c.update(overrides)
  return c


def fid_defaults(**overrides) -> ml_collections.ConfigDict:
  """FID/KID during training (see jaxgen/evaluation/in_training.py).

  Without a `config.eval` group FID is off. Set `config.train.best_metric =
  "eval/fid"` to keep the best generator by FID.

  Args:
    **overrides: values that replace the defaults.

  Returns:
    A ConfigDict for `config.eval`.
  """
  c = ml_collections.ConfigDict(dict(
      fid_every=0,             # Steps between FID evaluations (0 = off).
      fid_num=5000,            # Generated images per evaluation.
      fid_batch_size=64,       # generate() chunk and Inception batch size.
      fid_resize="bilinear-tf",  # Resize to 299 px (evaluation/resize.py).
      fid_ref_num=0,           # Test-split images for the reference; 0 = all.
      kid_subsets=10,          # KID subsets of <= 1000 images; 0 = no KID.
  ))
  c.update(overrides)
  return c


def gan_defaults(loss="bce", **overrides) -> ml_collections.ConfigDict:
  """The GAN options every GAN family (gan, siamese_gan, cgan, cyclegan) reads.

  The stability toolbox is off by default; see README "Stability toolbox"
  for what each option does and the measurements behind the recipes.

  Args:
    loss: the adversarial loss.
    **overrides: values that replace the defaults (family-specific fields,
      e.g. cgan's l1_weight, are added this way).

  Returns:
    A ConfigDict for `config.gan`.
  """
  c = ml_collections.ConfigDict(dict(
      loss=loss,             # "bce" (non-saturating), "lsgan", "hinge", "wgan".
      d_steps=1,             # Discriminator updates per generator update.
      g_steps=1,             # Generator updates per discriminator update.
      diffaug="",            # DiffAugment policy before every D call of a
                             # training step (jaxgen/diffaugment.py), e.g.
                             # "color,translation,cutout"; "" = off.
      gp_weight=0.0,         # WGAN-GP: lambda on (|grad D(x_hat)| - 1)^2.
      r1_weight=0.0,         # R1 gamma: (gamma / 2) E|grad D(real)|^2...
      r1_every=16,           # ...on every this-many-th D update, times this.
      feature_matching=0.0,  # Weight of the D-feature matching term in G.
      ema_decay=0.0,         # EMA generator for samples/eval/best; 0 = off.
      d_spectral_norm=False,  # Spectral normalisation of D's weights.
      d_joint_batch=False,   # gan, siamese_gan: D's training calls normalise
                             # real and generated images as one batch.
      d_scales=1,            # PatchGAN families: discriminators at this many
                             # scales (1, 1/2, 1/4, ...).
  ))
  c.update(overrides)
  return c


def adam(lr=2e-4, b1=0.5, b2=0.999, **extra) -> ml_collections.ConfigDict:
  """An Adam optimizer config (see jaxgen/optim.py)."""
  c = ml_collections.ConfigDict(dict(
      lr=lr, b1=b1, b2=b2, weight_decay=0.0, grad_clip=0.0,
      schedule="constant", decay_start=0.5, warmup_steps=0))
  c.update(extra)
  return c


def augment_defaults(enabled=True, **overrides) -> ml_collections.ConfigDict:
  """Augmentation switches (see jaxgen/data/augment.py); 0 disables each."""
  c = ml_collections.ConfigDict(dict(
      scale=0.1 if enabled else 0.0,
      rotation=5.0 if enabled else 0.0,
      translation=0.05 if enabled else 0.0,
      noise=0.0,
      crop=0.0,
  ))
  c.update(overrides)
  return c


def signature_data(demo: bool, res: int, root: str = "") -> ml_collections.ConfigDict:
  """Data config for the signature tasks.

  Args:
    demo: use the embedded procedural signatures (no files needed).
    res: image resolution (square).
    root: folder with one sub-folder per signer (real-data default).

  Returns:
    A ConfigDict for `config.data`.
  """
  return ml_collections.ConfigDict(dict(
      name="synthetic_signatures" if demo else "signatures",
      root=root,
      res=res,
      channels=1,          # Greyscale scans.
      invert=True,         # Ink = 1 on background 0.
      binarize=True,
      test_fraction=0.2,   # Fraction of writers held out.
      on_bad_file="error",  # Or "skip": warn and count.
      num_writers=64,      # Procedural data only.
      per_writer=24,       # Procedural data only.
      seed=0,
      augment=augment_defaults(),
  ))


def shared_data(config_file: str, name: str) -> str:
  """The folder ../shared/data/NAME beside the repository of a config file.

  Args:
    config_file: a file in configs/ (its `__file__`).
    name: the data folder's name, e.g. "cufs".

  Returns:
    The normalised path (which may not exist).
  """
  repo = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
  return os.path.normpath(os.path.join(repo, "..", "shared", "data", name))


def unknown_override(config: ml_collections.ConfigDict, argv, flag="config"):
  """Finds the first `--config.a.b=v` in argv naming a missing field.

  Args:
    config: the loaded config.
    argv: command-line arguments.
    flag: the config flag's name.

  Returns:
    A message naming the bad field and the valid fields at that level, or None
    when every override names an existing field.
  """
  prefix = f"--{flag}."
  for arg in argv:
    if not arg.startswith(prefix):
      continue
    path = arg[len(prefix):].split("=", 1)[0]
    node, seen = config, []
    for part in path.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        where = ".".join([flag] + seen)
        valid = (", ".join(sorted(node.keys()))
                 if isinstance(node, ml_collections.ConfigDict) else
                 "(none: it is a value, not a group)")
        return (f"Unknown config field {path!r} in {arg!r}: {where} has no "
                f"field {part!r}. Valid fields of {where}: {valid}.")
      node = node[part]
      seen.append(part)
  return None


def load_config_module(path: str):
  """Imports a config file (e.g. configs/cgan.py) as a module.

  Args:
    path: the file's path.

  Returns:
    The module, with its `get_config` and any module-level constants.

  Raises:
    FileNotFoundError: if there is no file at `path`.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No config file at {path!r}.")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads "path/to/config.py[:arg]" the way --config does.

  Args:
    spec: a config file path, optionally followed by ":" and its argument.

  Returns:
    The ConfigDict returned by the file's get_config.
  """
  path, _, arg = spec.partition(":")
  return load_config_module(path).get_config(arg or None)
