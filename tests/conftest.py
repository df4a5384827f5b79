"""Shared pytest set-up: a persistent XLA compilation cache for the session.

End-to-end tests build the same tiny models many times; caching compiled
programs on disk keeps the suite within minutes on 2 CPU cores without
changing any result.
"""

import os
import sys
import tempfile

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

_CACHE = os.environ.get("JAXGEN_TEST_XLA_CACHE",
                        os.path.join(tempfile.gettempdir(), "jaxgen_xla_cache"))
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
