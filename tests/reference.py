"""Independent references shared by tests.

Import as `from tests import reference`.
"""

import collections

import jax
import numpy as np


def ssim_numpy(a, b, max_val=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
  """Straightforward SSIM of one [H, W, C] pair: explicit 2-D
  Gaussian-weighted windows (VALID), averaged over the map and channels."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  ax = np.arange(size) - (size - 1) / 2
  g = np.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * sigma ** 2))
  g /= g.sum()
  c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
  vals = []
  for ch in range(a.shape[-1]):
    wa = np.lib.stride_tricks.sliding_window_view(a[..., ch], (size, size))
    wb = np.lib.stride_tricks.sliding_window_view(b[..., ch], (size, size))
    ma, mb = (wa * g).sum((-1, -2)), (wb * g).sum((-1, -2))
    va = (wa ** 2 * g).sum((-1, -2)) - ma ** 2
    vb = (wb ** 2 * g).sum((-1, -2)) - mb ** 2
    cov = (wa * wb * g).sum((-1, -2)) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2) /
         ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    vals.append(s)
  return np.mean(vals)


def _sub_jaxprs(eqn):
  for param in eqn.params.values():
    for p in param if isinstance(param, (list, tuple)) else (param,):
      if hasattr(p, "eqns"):  # A Jaxpr.
        yield p
      elif hasattr(p, "jaxpr") and hasattr(p.jaxpr, "eqns"):  # ClosedJaxpr.
        yield p.jaxpr


def primitive_input_dtypes(fn, *args, names=("conv_general_dilated",)):
  """{primitive: Counter of input dtype tuples} over the traced program of
  `fn(*args)`, nested jaxprs (jit, custom_vjp, cond, ...) included."""
  found = collections.defaultdict(collections.Counter)

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in names:
        found[eqn.primitive.name][tuple(
            str(v.aval.dtype) for v in eqn.invars)] += 1
      for sub in _sub_jaxprs(eqn):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return dict(found)
