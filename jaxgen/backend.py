"""Per-backend XLA compiler options for jaxgen's jitted steps.

Together with the up/down-sampling table in jaxgen/models/layers.py this is
where backend-specific speed choices live. Options are passed per jit
(`jax.jit(..., compiler_options=...)`), never through the process-wide
XLA_FLAGS, so they affect only jaxgen's own steps.

CPU: XLA:CPU hands convolutions, dots, reductions and elementwise fusions to
YNNPACK by default. On jaxgen's shapes YNNPACK's convolutions were slower
than XLA's Eigen convolutions (several times for the kernel gradients, every
conv layer's backward w.r.t. its weights), but its reductions are what keep
BatchNorm fast (all of YNNPACK off made BatchNorm several times slower). So
jaxgen keeps YNNPACK for reductions only. The figures are in README.md
("Benchmarks"); `python benchmarks/layers_bench.py` with and without
JAXGEN_XLA_OPTIONS=0 measures them on any machine.

Set JAXGEN_XLA_OPTIONS=0 in the environment to compile with XLA's defaults
(to measure the difference, or to rule these options out when debugging).
"""

import os
from typing import Any, Callable, Dict, Optional

import jax

# Backend -> XLA debug options (name -> value as a string).
_OPTIONS: Dict[str, Dict[str, str]] = {
    # YNNPACK for reductions only (see the module docstring).
    "cpu": {"xla_cpu_experimental_ynn_fusion_type":
                "LIBRARY_FUSION_TYPE_REDUCE"},
}


# Backends on which a step's alternation (gan_base.alternate) computes the
# update every call and selects its result, instead of a lax.cond: XLA:CPU
# runs a train step whose update sits in a conditional several times slower
# than one that computes it unconditionally (`python
# benchmarks/penalty_bench.py --alternation`).
_SELECT_NOT_COND = ("cpu",)


def select_not_cond(backend: Optional[str] = None) -> bool:
  """Whether alternating updates select instead of branching on `backend`.

  Args:
    backend: a JAX backend name; defaults to `jax.default_backend()`.

  Returns:
    True where a conditional update costs more than a computed one.
  """
  return (backend or jax.default_backend()) in _SELECT_NOT_COND


def compiler_options(backend: Optional[str] = None) -> Optional[Dict[str, str]]:
  """The options jaxgen compiles its steps with on `backend`.

  Args:
    backend: a JAX backend name; defaults to `jax.default_backend()`.

  Returns:
    A dict for `jax.jit(compiler_options=...)`, or None for XLA's defaults.
  """
  if os.environ.get("JAXGEN_XLA_OPTIONS", "1").lower() in ("0", "false"):
    return None
  return _OPTIONS.get(backend or jax.default_backend()) or None


def jit(fn: Callable[..., Any], **kwargs) -> Callable[..., Any]:
  """`jax.jit` with `compiler_options()` for the default backend.

  Args:
    fn: the function to compile.
    **kwargs: any other `jax.jit` arguments (shardings, donation, ...).

  Returns:
    The jitted function.
  """
  return jax.jit(fn, compiler_options=compiler_options(), **kwargs)
