"""Runs jaxgen's command lines in a fresh process, as a user would, and
imports the scripts of launch/.

Import as `from tests import clis`.
"""

import importlib.util
import os
import subprocess
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env(devices: int = 1) -> dict:
  """The environment of a test subprocess: this checkout first, `devices`
  CPU devices, and the session's XLA compilation cache and flags.

  The flags are this process's (tests/conftest.py may add some) with the
  device count replaced; for one device, the default, none is added, so a
  subprocess's cache keys are those of the same programs compiled here (XLA
  flags are part of the key) and each finds what the other compiled.
  """
  out = dict(os.environ)
  out["PYTHONPATH"] = ROOT + os.pathsep + out.get("PYTHONPATH", "")
  out.pop("JAX_NUM_CPU_DEVICES", None)
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  if devices != 1:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  out["XLA_FLAGS"] = " ".join(flags)
  # Reuse compiled programs across the test processes.
  out["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
  out["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return out


def run(module: str, *args: str, timeout: int = 600
        ) -> subprocess.CompletedProcess:
  """`python -m module args...` from the repository root, text output."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        env=env(), capture_output=True, text=True,
                        timeout=timeout)


def launch_module(name: str):
  """Imports launch/NAME.py (launch/ holds scripts, not a package)."""
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "launch", name + ".py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
