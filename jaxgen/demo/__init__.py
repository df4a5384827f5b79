r"""A live web demo of trained runs: upload, webcam or sketch pad -> result.

  python -m jaxgen.demo --workdir=runs/cgan_demo --workdir=runs/cyclegan_demo
  # open http://127.0.0.1:7860

The page offers, for each loaded run (chosen from a list):
  * translation runs (pix2pix, CycleGAN): an image from a file (or dropped on
    the page), a photo from the webcam, or a sketch drawn on a pad; the
    direction (face -> sketch, sketch -> face) where the run has both, the
    label of a label-conditioned pix2pix; the result beside the input, with
    a download link;
  * generative runs (VAE, GAN, siamese GAN): "sample a grid" with a seed
    (and the class of a class-conditional run); for GANs each image may be
    the best of 5 draws by the run's own discriminator, by its real/fake
    score or by its class head (`:cond,ac`), as `jaxgen-sample --select`.

From a notebook:

  from jaxgen import demo
  app = demo.make_app(["runs/cgan_demo"])
  server = demo.start(app, port=0)        # serves in a background thread
  print(demo.url(server)); ...; server.shutdown()

Inputs and outputs. An upload is refused (with a sentence on the page, and
the server keeps serving) when it is over `images.MAX_BYTES` (10 MB) or
`images.MAX_PIXELS` (40 megapixels, checked from the header before anything
is decoded; Pillow's own `Image.MAX_IMAGE_PIXELS` is set to the same value,
process-wide), or when it is not a PNG/JPEG/WebP/GIF/BMP Pillow can decode.
Any mode is accepted (transparency goes over white, greys and CMYK to RGB,
EXIF orientation applied); the image is squashed (not cropped) to the
model's square `config.data.crop_size` and converted to its input channels,
and the result is stretched back to the input's size, capped at 1024 px on
the longer side: the output lines up with the input whatever its shape.

Why a page of our own rather than gradio (the ecosystem's convention):
  * size and churn: gradio 6 adds 34 packages (about 53 MB of wheels:
    FastAPI, pydantic, pandas, huggingface-hub...) to a research install,
    has had three major releases (4, 5, 6) since late 2023, and its webcam
    and sketch inputs changed API at 4.0 (`source=`/`tool=` became
    `sources=` and ImageEditor); this demo is the standard library's
    http.server, Pillow, and one HTML file with no dependencies;
  * offline: gradio loads fonts from a CDN and sends usage analytics unless
    told not to; this page loads nothing from elsewhere, and its
    Content-Security-Policy header makes the browser enforce that;
  * testing: the request handler is a plain function (`DemoApp.handle`),
    tested without sockets, and the page's few elements have stable ids
    that a headless-Chromium test drives directly (gradio's generated DOM
    changes between releases).
  The browser gives the rest for free: <input type=file>, a <canvas> sketch
  pad, and getUserMedia for the webcam (browsers allow cameras only on
  https or localhost pages, so a page shared with --host over plain http
  offers upload and sketch only).
"""

import threading

from jaxgen.demo import images
from jaxgen.demo.app import DemoApp
from jaxgen.demo.app import load_models
from jaxgen.demo.app import make_server
from jaxgen.demo.app import Model

__all__ = ["DemoApp", "Model", "images", "load_models", "make_app",
           "make_server", "run_main", "serve", "start", "url"]


def make_app(workdirs, which=None, warm_up: bool = True,
             max_bytes: int = images.MAX_BYTES,
             max_pixels: int = images.MAX_PIXELS,
             max_output_side: int = images.MAX_OUTPUT_SIDE) -> DemoApp:
  """Loads trained runs and returns the demo for them (not yet serving).

  Args:
    workdirs: run folders (a str for one), shown on the page in this order.
    which: "best" or "latest"; None picks best where a run kept one.
    warm_up: compile every model function now (first requests are fast).
    max_bytes: the largest upload accepted.
    max_pixels: the largest width * height of an upload (also set as
      Pillow's process-wide `Image.MAX_IMAGE_PIXELS`).
    max_output_side: the longest side of a returned result.

  Returns:
    A DemoApp; `make_server`, `start` or `serve` put it on the network.

  Raises:
    jaxgen.run.RunError: a workdir that cannot be loaded or shown.
  """
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  return DemoApp(load_models(workdirs, which, warm_up), max_bytes=max_bytes,
                 max_pixels=max_pixels, max_output_side=max_output_side)


def url(server) -> str:
  """The address a browser on this machine opens for `server`."""
  host, port = server.server_address[:2]
  host = "127.0.0.1" if host in ("0.0.0.0", "") else host
  return f"http://{host}:{port}/"


def start(app: DemoApp, host: str = "127.0.0.1", port: int = 7860):
  """Serves `app` from a daemon thread; returns the server (`shutdown()`)."""
  server = make_server(app, host, port)
  threading.Thread(target=server.serve_forever, daemon=True,
                   name="jaxgen-demo").start()
  return server


def serve(app: DemoApp, host: str = "127.0.0.1", port: int = 7860):
  """Serves `app` until interrupted (Ctrl-C)."""
  server = make_server(app, host, port)
  print(f"jaxgen demo: {len(app.models)} model(s) at {url(server)} "
        "(Ctrl-C stops)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


def run_main():
  """Console-script entry point (`jaxgen-demo`): flags, then `serve`."""
  from jaxgen.demo import cli  # pylint: disable=g-import-not-at-top
  cli.run_main()
