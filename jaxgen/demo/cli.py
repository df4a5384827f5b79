r"""Command line of the web demo (see jaxgen/demo/__init__.py).

  python -m jaxgen.demo --workdir=runs/cgan_demo [--workdir=runs/cyc ...] \
      [--host=127.0.0.1] [--port=7860] [--which=best|latest]

The flags are defined here, not in the package, so that importing
jaxgen.demo from a notebook or next to another jaxgen CLI defines none.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from jaxgen import demo
from jaxgen import run as run_lib

FLAGS = flags.FLAGS
flags.DEFINE_multi_string(
    "workdir", None, "A trained run's folder; repeat to offer several runs.")
flags.DEFINE_string("host", "127.0.0.1",
                    "Interface to bind; 0.0.0.0 shares the demo on the "
                    "network (the webcam then needs https).")
flags.DEFINE_integer("port", 7860, "TCP port.")
flags.DEFINE_enum("which", None, list(run_lib.WHICH),
                  "Checkpoint of each run (default: best where kept, else "
                  "latest).")
flags.DEFINE_bool("warm_up", True,
                  "Compile every model before serving, so that no request "
                  "waits for XLA.")
flags.DEFINE_integer("max_mb", demo.images.MAX_BYTES // 2 ** 20,
                     "Largest upload in MB.")
flags.DEFINE_integer("max_megapixels", demo.images.MAX_PIXELS // 10 ** 6,
                     "Largest upload in megapixels.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  try:
    demo_app = demo.make_app(FLAGS.workdir, FLAGS.which, FLAGS.warm_up,
                             max_bytes=FLAGS.max_mb * 2 ** 20,
                             max_pixels=FLAGS.max_megapixels * 10 ** 6)
  except run_lib.RunError as e:
    sys.exit(f"FATAL {e}")
  try:
    demo.serve(demo_app, FLAGS.host, FLAGS.port)
  except OSError as e:  # Port taken, interface missing.
    sys.exit(f"FATAL Cannot serve on {FLAGS.host}:{FLAGS.port}: {e}")


def run_main():
  app.run(main)
