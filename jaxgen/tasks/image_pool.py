"""A history of generated images for the discriminator (Shrivastava et al.).

CycleGAN updates each discriminator on a mix of the newest fakes and fakes
from earlier steps, which damps oscillation. The reference implementation
keeps the pool as a Python list; here it is a fixed-size array in the
jitted train state, so it is donated, sharded and checkpointed with
everything else and a resumed run continues bit for bit.

Per image, in batch order (as the reference): while the pool has room the
image is stored and returned; once full, with probability `swap_prob` a
random stored image is returned and replaced by the new one, otherwise the
new image is returned and the pool is unchanged. A pool of size 0 returns
its input.
"""

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ImagePool:
  """`images` [size, h, w, c] (the first `count` are filled) and `count`."""
  images: jax.Array
  count: jax.Array


def init_pool(size: int, image_shape, dtype=jnp.float32) -> ImagePool:
  """An empty pool of `size` images of `image_shape` (h, w, c)."""
  return ImagePool(images=jnp.zeros((size,) + tuple(image_shape), dtype),
                   count=jnp.zeros((), jnp.int32))


def query(pool: ImagePool, images: jax.Array, rng: jax.Array,
          swap_prob: float = 0.5):
  """Mixes `images` with the pool's history (see the module docstring).

  Args:
    pool: the current pool.
    images: [b, h, w, c] new fakes (no gradient is taken through the pool).
    rng: PRNG key; the result is a deterministic function of it.
    swap_prob: probability that a full pool returns a stored image.

  Returns:
    (new pool, [b, h, w, c] images for the discriminator).
  """
  size = pool.images.shape[0]
  if size == 0:
    return pool, images
  images = images.astype(pool.images.dtype)

  def one(carry, xs):
    stored, count = carry
    image, key = xs
    k_swap, k_index = jax.random.split(key)
    has_room = count < size
    swap = jnp.logical_and(~has_room,
                           jax.random.uniform(k_swap) < swap_prob)
    index = jnp.where(has_room, count,
                      jax.random.randint(k_index, (), 0, size))
    old = stored[index]
    out = jnp.where(swap, old, image)
    stored = stored.at[index].set(
        jnp.where(jnp.logical_or(has_room, swap), image, old))
    return (stored, count + has_room.astype(jnp.int32)), out

  keys = jax.random.split(rng, images.shape[0])
  (stored, count), out = jax.lax.scan(one, (pool.images, pool.count),
                                      (images, keys))
  return ImagePool(images=stored, count=count), out
