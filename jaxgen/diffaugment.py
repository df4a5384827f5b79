"""DiffAugment (Zhao et al. 2020): differentiable augmentation of every image
a discriminator sees, real and generated alike.

`augment(x, rng, policy)` applies, per image with its own random draws, the
comma-separated ops of `policy` in the order color, translation, cutout:

  color        brightness: x + U(-0.5, 0.5);
               saturation: (x - m_c) * U(0, 2) + m_c, m_c the per-pixel mean
               over channels (identity for one channel);
               contrast:   (x - m) * U(0.5, 1.5) + m, m the per-image mean.
  translation  a random integer shift in [-s, s] per axis, s = round(size / 8);
               pixels shifted in are 0.
  cutout       one random square of side round(size / 2) per image set to 0;
               its centre is uniform over the image, so near a border the
               square is clipped (as the reference).

Scale: the images are in [-1, 1], the scale of the reference implementation
(its StyleGAN2 and BigGAN code), so its ranges are used unchanged, and 0,
the reference's fill value, is mid-grey here (not black). As in the
reference nothing is clipped, so colour can leave [-1, 1]: outputs stay
within [-3, 3] for one channel and [-9, 9] for several (`max_abs_value`;
the discriminator does not need its inputs in [-1, 1]).

Everything is a pure function of (x, rng) built from jnp ops, so it is
jittable and differentiable in x (the generator's gradient flows through
the augmentation of its images). dm-pix's random colour ops draw one value
per batch and its translations are not integer shifts with zero fill, so
the ops are written here.

`augment_pair(condition, x, rng, policy)` augments a (condition, image) pair
for a conditional discriminator: colour on the image only (the condition is
an input, not judged), translation and cutout with the same draws on both,
so the pixel alignment of the pair survives.
"""

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp

OPS = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str, field: str = "gan.diffaug") -> Tuple[str, ...]:
  """The ops of a comma-separated policy, in application order.

  Args:
    policy: e.g. "color,translation,cutout"; "" for none.
    field: the config field named in the error message.

  Returns:
    A tuple of op names (a subset of OPS, in OPS order).

  Raises:
    ValueError: for an unknown op name.
  """
  names = [p.strip() for p in (policy or "").split(",") if p.strip()]
  unknown = [n for n in names if n not in OPS]
  if unknown:
    raise ValueError(f"Unknown {field} op(s) {unknown} in {policy!r}; valid: "
                     f"comma-separated names from {OPS}, or '' for none.")
  return tuple(op for op in OPS if op in names)


def max_abs_value(ops: Sequence[str], channels: int) -> float:
  """A bound on |augment(x)| for x in [-1, 1] (see the module docstring).

  Brightness gives |y| <= 1.5; saturation s * y + (1 - s) * m_c with s in
  [0, 2] keeps |y| <= 3 * 1.5 (channels > 1); contrast c * y + (1 - c) * m
  with c in [0.5, 1.5] at most doubles the bound. Translation and cutout
  only write zeros.

  Args:
    ops: the policy's ops.
    channels: the images' channel count.

  Returns:
    The bound: 1 without colour, else 3 (one channel) or 9.
  """
  if "color" not in ops:
    return 1.0
  return 2.0 * 1.5 * (3.0 if channels > 1 else 1.0)


def _uniform(rng, n, low, high):
  return jax.random.uniform(rng, (n, 1, 1, 1), minval=low, maxval=high)


def color(x, rng):
  """Random brightness, saturation and contrast, one draw of each per image.

  Args:
    x: [b, h, w, c] images.
    rng: PRNG key.

  Returns:
    The transformed images, same shape.
  """
  n = x.shape[0]
  k_b, k_s, k_c = jax.random.split(rng, 3)
  x = x + _uniform(k_b, n, -0.5, 0.5)
  if x.shape[-1] > 1:
    m = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - m) * _uniform(k_s, n, 0.0, 2.0) + m
  m = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - m) * _uniform(k_c, n, 0.5, 1.5) + m


def _ratio_size(size, ratio):
  return int(size * ratio + 0.5)


def translate(x, shifts):
  """Shifts each image by whole pixels, filling with 0.

  out[i, y, x] = in[i, y - dy_i, x - dx_i] where that is inside the image.

  Args:
    x: [b, h, w, c].
    shifts: [b, 2] ints (dy, dx); clipped to round(size / 8) (at least 1).

  Returns:
    The shifted images, same shape.
  """
  h, w = x.shape[1:3]
  ph, pw = max(1, _ratio_size(h, TRANSLATION_RATIO)), max(
      1, _ratio_size(w, TRANSLATION_RATIO))
  padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))

  def one(img, s):
    return jax.lax.dynamic_slice(img, (ph - s[0], pw - s[1], 0),
                                 (h, w, x.shape[-1]))
  bound = jnp.array([ph, pw])
  return jax.vmap(one)(padded, jnp.clip(shifts, -bound, bound))


def rand_translation(x, rng):
  """`translate` by uniform integer shifts in [-s, s], s = round(size / 8)."""
  h, w = x.shape[1:3]
  k_y, k_x = jax.random.split(rng)
  sy, sx = _ratio_size(h, TRANSLATION_RATIO), _ratio_size(w, TRANSLATION_RATIO)
  n = x.shape[0]
  shifts = jnp.stack([jax.random.randint(k_y, (n,), -sy, sy + 1),
                      jax.random.randint(k_x, (n,), -sx, sx + 1)], axis=-1)
  return translate(x, shifts)


def cutout_mask(shape, centres):
  """[b, h, w, 1] mask: 0 on a round(size/2) square around each centre.

  The square covers rows cy - side // 2 ... cy - side // 2 + side - 1 (and
  likewise columns), clipped to the image.

  Args:
    shape: the images' shape [b, h, w, c].
    centres: [b, 2] ints (cy, cx).

  Returns:
    A float32 mask of ones with each image's square zeroed.
  """
  h, w = shape[1:3]
  side_h, side_w = _ratio_size(h, CUTOUT_RATIO), _ratio_size(w, CUTOUT_RATIO)
  top = (centres[:, 0] - side_h // 2)[:, None]
  left = (centres[:, 1] - side_w // 2)[:, None]
  rows, cols = jnp.arange(h)[None], jnp.arange(w)[None]
  in_rows = (rows >= top) & (rows < top + side_h)   # [b, h]
  in_cols = (cols >= left) & (cols < left + side_w)  # [b, w]
  inside = in_rows[:, :, None] & in_cols[:, None, :]
  return jnp.where(inside, 0.0, 1.0)[..., None]


def rand_cutout(x, rng):
  """Zeroes one half-size square per image, centred uniformly at random.

  Centres are drawn from [0, size + 1 - side % 2), the reference's range.
  """
  h, w = x.shape[1:3]
  k_y, k_x = jax.random.split(rng)
  n = x.shape[0]
  side_h, side_w = _ratio_size(h, CUTOUT_RATIO), _ratio_size(w, CUTOUT_RATIO)
  centres = jnp.stack(
      [jax.random.randint(k_y, (n,), 0, h + 1 - side_h % 2),
       jax.random.randint(k_x, (n,), 0, w + 1 - side_w % 2)], axis=-1)
  return x * cutout_mask(x.shape, centres).astype(x.dtype)


_GEOMETRIC = {"translation": rand_translation, "cutout": rand_cutout}


def augment_pair(condition, x, rng, policy):
  """DiffAugment of (condition, image) pairs with shared geometry.

  Args:
    condition: [b, h, w, cc] (e.g. the sketch) or None.
    x: [b, h, w, c] images in [-1, 1].
    rng: PRNG key.
    policy: a policy string or a tuple from `parse_policy`.

  Returns:
    (condition, x) augmented: colour on x only, translation and cutout with
    the same per-pair draws on both. `condition` stays None if None.
  """
  ops = parse_policy(policy) if isinstance(policy, str) else tuple(policy)
  if not ops:
    return condition, x
  keys = dict(zip(OPS, jax.random.split(rng, len(OPS))))
  if "color" in ops:
    x = color(x, keys["color"])
  split = None if condition is None else condition.shape[-1]
  both = x if condition is None else jnp.concatenate(
      [condition.astype(x.dtype), x], axis=-1)
  for op in ops:
    if op in _GEOMETRIC:
      both = _GEOMETRIC[op](both, keys[op])
  if split is None:
    return None, both
  return both[..., :split].astype(condition.dtype), both[..., split:]


def augment(x, rng, policy):
  """DiffAugment of a batch of images (see the module docstring).

  Args:
    x: [b, h, w, c] images in [-1, 1].
    rng: PRNG key; each image gets its own draws.
    policy: comma-separated op names (or a tuple from `parse_policy`).

  Returns:
    The augmented images, same shape ("" returns x itself).
  """
  return augment_pair(None, x, rng, policy)[1]
