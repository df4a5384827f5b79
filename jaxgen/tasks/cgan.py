"""Conditional GAN (pix2pix): sketch -> photo translation.

Batches hold {"sketch", "photo"} in [-1, 1] (and an int "label" when
`config.data.num_classes` > 0); see jaxgen/data/paired_datasets.py.

Generator (`model.generator`): "unet" (pix2pix U-Net, dropout as noise) or
"encoder" (sketch encoder to a `code_dim` vector joined with noise z, no
skips). Discriminator: a PatchGAN on (sketch, image) pairs.

Losses (computed in float32 whatever `model.dtype`):
  D: 0.5 * [adv(D(s, y), real) + adv(D(s, G(s)), fake)]  (halved, pix2pix)
  G: adv(D(s, G(s)), real) + l1_weight * |G(s) - y|       (L1 on [-1, 1])
with adv from `gan.loss`: "bce" (non-saturating), "lsgan" or "hinge".

Each step runs the generator forward once (as pix2pix does): D is updated
on the detached fake, then G is updated against the updated D by pulling
the loss gradient w.r.t. the fake back through the saved forward (jax.vjp).
`gan.g_steps` = k updates D on every k-th step only (k generator steps per
discriminator step); `gan.d_steps` = k the converse.

Optimizers: Adam with the schedules of jaxgen/optim.py ("linear" is the
pix2pix constant-then-linear decay) or "plateau": optax's reduce_on_plateau
scaling the Adam updates, fed the training L1 of every step (the adversarial
terms are non-stationary by design and say little about progress); its
patience counts windows of `plateau_window` steps whose mean L1 is compared.

Evaluation (per validation image, on the [0, 1] scale): `l1` (mean absolute
error, i.e. half the L1 loss term's scale), `psnr` (peak 1) and `ssim`
(Gaussian 11x11, jaxgen/evaluation/paired.py; images of at least 11 px).
"""

import functools

import flax
import jax
import jax.numpy as jnp
import optax

from jaxgen import backend
from jaxgen import losses, optim
from jaxgen.evaluation import paired as paired_eval
from jaxgen.models import patchgan, unet
from jaxgen.tasks import base

GENERATORS = ("unet", "encoder")
DTYPES = ("auto", "float32", "bfloat16")
_SSIM_WINDOW = 11


def resolve_dtype(name: str):
  """`model.dtype` -> compute dtype: "auto" is bfloat16 on GPU/TPU, else f32.

  Args:
    name: "auto", "float32" or "bfloat16".

  Returns:
    A jnp dtype.
  """
  if name == "auto":
    return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
  if name not in DTYPES:
    raise ValueError(f"Unknown model.dtype {name!r}; valid: {DTYPES}.")
  return jnp.dtype(name)


def make_optimizer(cfg, total_steps: int):
  """optim.make_optimizer, plus the "plateau" schedule; accepts `value=`.

  Args:
    cfg: an Adam config (configlib.adam) with `schedule`; "plateau" also
      reads plateau_factor, plateau_patience, plateau_cooldown,
      plateau_window, plateau_min_scale and plateau_rtol.
    total_steps: updates this optimizer will make.

  Returns:
    An optax.GradientTransformationExtraArgs; its update takes the loss as
    `value` (ignored unless the schedule is "plateau").
  """
  if cfg.get("schedule") != "plateau":
    return optax.with_extra_args_support(
        optim.make_optimizer(cfg, total_steps))
  constant = cfg.copy_and_resolve_references()
  constant.schedule = "constant"
  return optax.chain(
      optim.make_optimizer(constant, total_steps),
      optax.contrib.reduce_on_plateau(
          factor=cfg.get("plateau_factor", 0.5),
          patience=cfg.get("plateau_patience", 5),
          cooldown=cfg.get("plateau_cooldown", 0),
          accumulation_size=cfg.get("plateau_window", 100),
          min_scale=cfg.get("plateau_min_scale", 0.01),
          rtol=cfg.get("plateau_rtol", 1e-4)))


def lr_schedule(cfg, total_steps: int):
  """The schedule of `cfg` without the plateau factor (for logging)."""
  if cfg.get("schedule") == "plateau":
    return optax.constant_schedule(cfg.lr)
  return optim.make_schedule(cfg, total_steps)


def d_loss_fn(real_logits, fake_logits, kind="bce"):
  """Halved discriminator loss (pix2pix), mean over batch and patches."""
  return 0.5 * jnp.mean(losses.gan_d_loss(real_logits, fake_logits, kind))


def g_loss_fn(fake_logits, fake, real, kind="bce", l1_weight=100.0):
  """Generator loss adv + l1_weight * L1; returns (total, adv, l1) means."""
  adv = jnp.mean(losses.gan_g_loss(fake_logits, kind))
  l1 = jnp.mean(losses.l1(fake, real))
  return adv + l1_weight * l1, adv, l1


def to_rgb(x):
  """Repeats a single channel three times (grey sketches in colour grids)."""
  return jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def rbg_key(key):
  """A key of the "rbg" PRNG (XLA's RngBitGenerator) derived from `key`.

  Used for parameter initialisation and dropout masks: XLA:CPU compiles
  threefry bit generation slowly (about 20 s for a tiny U-Net's
  initialisers on the 2-core dev machine, 2.5 s with rbg), and these
  random bits need no cross-version reproducibility beyond the run itself.
  """
  return jax.random.wrap_key_data(
      jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


def _apply_updates(ts: base.TrainState, grads, value, batch_stats):
  """TrainState.apply_gradients that passes `value` to the optimizer."""
  updates, opt_state = ts.tx.update(grads, ts.opt_state, ts.params,
                                    value=value)
  return ts.replace(step=ts.step + 1,
                    params=optax.apply_updates(ts.params, updates),
                    opt_state=opt_state, batch_stats=batch_stats)


@flax.struct.dataclass
class CGANState:
  """Generator and discriminator train states and the shared step."""
  step: jax.Array
  g: base.TrainState
  d: base.TrainState


class CGANTask(base.Task):
  """pix2pix-style conditional GAN on paired batches (see module doc)."""

  @property
  def num_classes(self) -> int:
    return int(self.config.data.get("num_classes", 0))

  def make_models(self, photo_channels: int):
    """The (generator, discriminator) pair from config.model."""
    m = self.config.model
    dtype = resolve_dtype(m.get("dtype", "auto"))
    common = dict(num_classes=self.num_classes, label_dim=m.label_dim,
                  dtype=dtype)
    if m.generator == "unet":
      gen = unet.UNet(
          out_channels=photo_channels, depth=m.depth, width=m.g_width,
          max_width=m.max_width, dropout=m.dropout,
          num_dropout=m.num_dropout, upsample_impl=m.upsample_impl,
          downsample_impl=m.downsample_impl, **common)
    elif m.generator == "encoder":
      gen = unet.EncoderGenerator(
          out_channels=photo_channels, width=m.g_width,
          max_width=m.max_width, code_dim=m.code_dim,
          upsample_impl=m.upsample_impl, downsample_impl=m.downsample_impl,
          **common)
    else:
      raise ValueError(f"Unknown model.generator {m.generator!r}; valid: "
                       f"{GENERATORS}.")
    disc = patchgan.PatchGAN(width=m.d_width, max_width=m.max_width,
                             n_layers=m.n_layers,
                             downsample_impl=m.downsample_impl, **common)
    return gen, disc

  def init_state(self, rng, batch):
    # The loop's example batch holds un-augmented training elements (at the
    # load size); the models are built for the crop size they will see.
    res = self.config.data.get("crop_size", 0) or batch["sketch"].shape[1]
    n = 2
    sketch = jnp.zeros((n, res, res, batch["sketch"].shape[-1]), jnp.float32)
    photo = jnp.zeros((n, res, res, batch["photo"].shape[-1]), jnp.float32)
    label = jnp.zeros((n,), jnp.int32) if self.num_classes else None
    self.gen, self.disc = self.make_models(photo.shape[-1])
    g_rng, d_rng, z_rng = jax.random.split(rbg_key(rng), 3)
    g_vars = jax.jit(functools.partial(self.gen.init, train=False))(
        g_rng, sketch, label, self._z(z_rng, n))
    d_vars = jax.jit(functools.partial(self.disc.init, train=False))(
        d_rng, sketch, photo, label)
    gan, steps = self.config.gan, self.config.train.num_steps
    g_steps = steps // max(1, gan.d_steps)
    d_steps = steps // max(1, gan.g_steps)
    self._lr = {"g": lr_schedule(self.config.g_optim, g_steps),
                "d": lr_schedule(self.config.d_optim, d_steps)}
    return CGANState(
        step=jnp.zeros((), jnp.int32),
        g=base.create_train_state(
            self.gen, g_vars, make_optimizer(self.config.g_optim, g_steps)),
        d=base.create_train_state(
            self.disc, d_vars, make_optimizer(self.config.d_optim, d_steps)))

  # Pieces.

  def _z(self, rng, num):
    """Noise for the encoder generator (None for the U-Net)."""
    if self.config.model.generator != "encoder":
      return None
    return jax.random.normal(rng, (num, self.config.model.z_dim))

  def _inputs(self, batch):
    label = batch["label"] if self.num_classes else None
    return batch["sketch"], batch["photo"], label

  def translate(self, state, sketch, label=None, rng=None):
    """G(sketch[, label]) in eval mode (running BN stats, no dropout).

    Args:
      state: a CGANState.
      sketch: [b, h, w, Cs] in [-1, 1].
      label: [b] ints for a label-conditioned model.
      rng: noise key for the encoder generator (default: key 0).

    Returns:
      [b, h, w, Cp] float32 images in [-1, 1].
    """
    rng = jax.random.key(0) if rng is None else rng
    return self.gen.apply(state.g.variables(), sketch, label,
                          self._z(rng, sketch.shape[0]), train=False)

  def translate_batch(self, state, batch, rng):
    """Generated photos in [0, 1] for a batch's sketches (and labels)."""
    sketch, _, label = self._inputs(batch)
    return base.to_unit(self.translate(state, sketch, label, rng))

  def paired_targets(self, batch):
    """The real photos in [0, 1] that `translate_batch` should match."""
    return base.to_unit(batch["photo"])

  def _lr_metric(self, name, ts):
    lr = self._lr[name](ts.step)
    plateau = optax.contrib.ReduceLROnPlateauState
    for s in jax.tree_util.tree_leaves(
        ts.opt_state, is_leaf=lambda x: isinstance(x, plateau)):
      if isinstance(s, plateau):
        lr = lr * s.scale
    return lr

  def _maybe(self, update, every, phase, state):
    """Runs update(state, apply) with apply = (step % every == phase)."""
    if every <= 1:
      return update(state, True)
    return jax.lax.cond(state.step % every == phase,
                        lambda s: update(s, True),
                        lambda s: update(s, False), state)

  # The step.

  def train_step(self, state, batch, rng):
    gan = self.config.gan
    if gan.d_steps > 1 and gan.g_steps > 1:
      raise ValueError("Set at most one of gan.d_steps and gan.g_steps > 1.")
    sketch, real, label = self._inputs(batch)
    drop_rng, z_rng = jax.random.split(rbg_key(rng))
    z = self._z(z_rng, sketch.shape[0])

    def g_forward(params):
      fake, upd = self.gen.apply(
          state.g.variables(params), sketch, label, z, train=True,
          rngs={"dropout": drop_rng}, mutable=["batch_stats"])
      return fake, upd["batch_stats"]

    fake, g_vjp, g_stats = jax.vjp(g_forward, state.g.params, has_aux=True)
    fake_d = jax.lax.stop_gradient(fake)
    value = jnp.mean(losses.l1(fake_d, real))  # Drives "plateau" schedules.

    def d_loss(params, d):
      v = d.variables(params)
      real_logits, upd = self.disc.apply(v, sketch, real, label,
                                         mutable=["batch_stats"])
      v = dict(v, batch_stats=upd["batch_stats"])
      fake_logits, upd = self.disc.apply(v, sketch, fake_d, label,
                                         mutable=["batch_stats"])
      loss = d_loss_fn(real_logits, fake_logits, gan.loss)
      return loss, (real_logits, fake_logits, upd["batch_stats"])

    def d_update(state, apply):
      (loss, (rl, fl, stats)), grads = jax.value_and_grad(
          d_loss, has_aux=True)(state.d.params, state.d)
      if apply:
        state = state.replace(d=_apply_updates(state.d, grads, value, stats))
      return state, {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(rl)),
                     "d_fake": jnp.mean(jax.nn.sigmoid(fl)),
                     "d_lr": self._lr_metric("d", state.d)}

    def g_update(state, apply):
      def loss_of_fake(f):
        # D in train mode (batch statistics, as in the D step); its
        # statistics updates are discarded here.
        logits, _ = self.disc.apply(state.d.variables(), sketch, f, label,
                                    mutable=["batch_stats"])
        total, adv, l1 = g_loss_fn(logits, f, real, gan.loss, gan.l1_weight)
        return total, (adv, l1)

      (total, (adv, l1)), dfake = jax.value_and_grad(
          loss_of_fake, has_aux=True)(fake)
      if apply:
        (grads,) = g_vjp(dfake)
        state = state.replace(g=_apply_updates(state.g, grads, value,
                                               g_stats))
      return state, {"g_loss": total, "g_gan": adv, "g_l1": l1,
                     "g_lr": self._lr_metric("g", state.g)}

    state, d_metrics = self._maybe(d_update, gan.g_steps, 0, state)
    state, g_metrics = self._maybe(g_update, gan.d_steps, gan.d_steps - 1,
                                   state)
    return state.replace(step=state.step + 1), {**d_metrics, **g_metrics}

  def eval_step(self, state, batch, rng):
    sketch, real, label = self._inputs(batch)
    fake = self.translate(state, sketch, label, rng)
    a, b = base.to_unit(fake), base.to_unit(real)
    out = {"l1": jnp.mean(jnp.abs(a - b), axis=(1, 2, 3)),
           "psnr": -10.0 * jnp.log10(
               jnp.maximum(jnp.mean(jnp.square(a - b), axis=(1, 2, 3)),
                           1e-10))}
    if min(a.shape[1:3]) >= _SSIM_WINDOW:
      # evaluation.paired.ssim returns numpy and so cannot run inside the
      # loop's jitted eval step; its jitted core gives the same numbers.
      # pylint: disable-next=protected-access
      out["ssim"] = paired_eval._ssim_map_mean(a, b, _SSIM_WINDOW, 1.5, 0.01,
                                               0.03)
    return out

  def samples(self, state, batch, rng):
    if not hasattr(self, "_samples_jit"):
      self._samples_jit = backend.jit(self._samples)
    return self._samples_jit(state, batch, rng)

  def _samples(self, state, batch, rng):
    sketch, real, label = self._inputs(batch)
    fake = self.translate(state, sketch, label, rng)
    rows = [to_rgb(sketch), to_rgb(fake), to_rgb(real)]
    out = {"translation": _interleave(rows)}
    if self.num_classes:
      n = min(sketch.shape[0], 8)
      rows = [to_rgb(sketch[:n])]
      for c in range(min(self.num_classes, 8)):
        rows.append(to_rgb(self.translate(
            state, sketch[:n], jnp.full((n,), c, jnp.int32), rng)))
      rows.append(to_rgb(real[:n]))
      out["by_label"] = _interleave(rows)
    return {k: base.to_unit(v) for k, v in out.items()}

  def grid_columns(self, name):
    if name == "by_label":
      return min(self.num_classes, 8) + 2
    return 3 if name == "translation" else 8


def _interleave(columns):
  """[k x [n, ...]] -> [n * k, ...] so that each grid row is one example."""
  return jnp.stack(columns, axis=1).reshape((-1,) + columns[0].shape[1:])
