"""Shared pytest set-up: compile settings and a persistent XLA compilation
cache for the session.

Compiling the tiny test models, not running them, is what the suite spends
its time on, so:

* XLA:CPU generates code without LLVM optimisation (-O0) instead of its
  default -O3: the tests' programs are tiny, so LLVM's passes cost far more
  CPU than they save (-O3 spends about 20 s on each threefry parameter
  initialiser of even a tiny model), and the suite is compile-bound. The HLO
  optimisations are unchanged; results agree with -O3 to float rounding
  (summation order in fused reductions). An XLA_FLAGS that sets the level
  wins.
* End-to-end tests build the same tiny models many times; caching compiled
  programs on disk keeps the suite within minutes on 2 CPU cores without
  changing any result. Test subprocesses inherit both settings.

It also trains each config's :tiny variant at most once per test process
(`tiny_run`), for every test that only inspects such a run; tests that use
it carry `pytest.mark.xdist_group(f"tiny_{name}")` so that pytest-xdist
(`--dist loadgroup`, see setup.cfg) sends them to one worker. Expensive
fixtures are session-scoped even when one module uses them: xdist may run
other modules' tests in between, which tears module-scoped ones down.
"""

import os
import sys
import tempfile
from typing import NamedTuple

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# Read when the CPU backend starts, i.e. after this file runs.
_FLAGS = os.environ.get("XLA_FLAGS", "")
if "--xla_backend_optimization_level" not in _FLAGS:
  os.environ["XLA_FLAGS"] = (
      _FLAGS + " --xla_backend_optimization_level=0").strip()

_CACHE = os.environ.get("JAXGEN_TEST_XLA_CACHE",
                        os.path.join(tempfile.gettempdir(), "jaxgen_xla_cache"))
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def tiny_config(name: str, *options: str):
  """configs/<name>.py:tiny (after any other `options`, e.g. "labels")."""
  from jaxgen import configlib  # pylint: disable=g-import-not-at-top
  return configlib.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py") + ":" +
      ",".join(options + ("tiny",)))


def config_with(name: str, variant: str, **updates):
  """configs/<name>.py:<variant> with {"group.leaf": value} `updates`."""
  from jaxgen import configlib  # pylint: disable=g-import-not-at-top
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py") + ":" + variant)
  for path, value in updates.items():
    group, leaf = path.split(".")
    config[group][leaf] = value
  return config


class TinyRun(NamedTuple):
  result: object  # jaxgen.train.RunResult
  train_steps: list  # Every function jit_train_step returned.


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """`name -> TinyRun`: each config's unchanged :tiny variant, trained once
  in this test process and shared by every test that asks for it."""
  from jaxgen import train  # pylint: disable=g-import-not-at-top
  runs = {}

  def get(name):
    if name not in runs:
      steps = []
      original = train.jit_train_step

      def capture(task, mesh):
        steps.append(original(task, mesh))
        return steps[-1]

      with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "jit_train_step", capture)
        result = train.train_and_evaluate(
            tiny_config(name), str(tmp_path_factory.mktemp(name)))
      runs[name] = TinyRun(result, steps)
    return runs[name]

  return get


# Minutes-long tests that run other processes; started first, so that the
# second xdist worker takes the many short tests meanwhile (the scheduler
# hands out work in collection order).
_LONG = ("tests/test_multihost.py", "tests/test_notebooks.py",
         "tests/test_cyclegan.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    return next((i for i, prefix in enumerate(_LONG)
                 if item.nodeid.startswith(prefix)), len(_LONG))

  items.sort(key=rank)
