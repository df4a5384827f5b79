"""The demo's models, its request handling and its HTTP server.

`DemoApp.handle` maps one request (method, path and query, body) to one
response and never raises: refused uploads and bad parameters become a JSON
`{"error": ...}` with a 4xx status, anything unexpected a 500 with a short
message (the traceback goes to the server log only). The HTTP layer adds
the byte limit before a body is read and the headers every answer carries,
so the whole API can be tested without sockets.

Model calls run one at a time under a lock: on a CPU two translations at
once would each take twice as long, and one at a time bounds memory.
"""

import dataclasses
import http.server
import json
import math
import os
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple
import urllib.parse

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import reporting
from jaxgen import run as run_lib
from jaxgen import sample as sample_lib
from jaxgen.demo import images

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
TASK_NAMES = {"cgan": "pix2pix", "cyclegan": "CycleGAN", "gan": "DCGAN",
              "vae": "VAE", "siamese_gan": "siamese GAN"}
# CycleGAN's domain A is the photos and B the sketches (configs/cyclegan.py);
# "" is pix2pix's single sketch -> photo direction.
DIRECTION_NAMES = {"": "sketch → face", "BtoA": "sketch → face",
                   "AtoB": "face → sketch"}
SAMPLE_NUM = 16
MAX_SAMPLE_NUM = 64
# Best-of-k sampling by the run's own discriminator (jaxgen.sample.draw):
# the page's choices, and the draws per image (the query's `candidates`).
SELECT_NAMES = {"real": "D's real/fake score", "class": "D's class head"}
SELECT_CANDIDATES = 5
MAX_SELECT_CANDIDATES = 16
# A browser sending a body a little over the limit only sees the 413 if the
# server reads what it sent; beyond this much the connection is just closed.
_MAX_DRAIN = 64 * 1024 * 1024
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # The page loads nothing from elsewhere; the policy makes that a promise
    # the browser enforces.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' "
        "blob: mediastream:; style-src 'self' 'unsafe-inline'; script-src "
        "'self' 'unsafe-inline'; connect-src 'self'"),
}


class RequestError(ValueError):
  """A request the demo refuses: its message goes to the page as is."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass
class Response:
  status: int
  content_type: str
  body: bytes
  headers: Dict[str, str] = dataclasses.field(default_factory=dict)


def _json(obj, status: int = 200) -> Response:
  return Response(status, "application/json",
                  json.dumps(obj, ensure_ascii=False).encode())


def _error(message: str, status: int) -> Response:
  return _json({"error": message}, status)


class Model:
  """A restored run as the page sees it: directions, labels, sampling."""

  def __init__(self, run: run_lib.Run, model_id: str):
    self.run = run
    self.id = model_id
    task = run.task
    self.directions = list(run.directions)
    self.num_classes = int(getattr(task, "num_classes", 0) or 0)
    names = list(getattr(task, "class_names", None) or [])
    self.class_names = (names if len(names) == self.num_classes else
                        [f"class {k}" for k in range(self.num_classes)])
    self.generative = run.generates
    # Scores the samples can be picked by (none for VAEs and translators).
    self.selections = sample_lib.selections(run) if self.generative else []
    self.res = int(run.config.data.get("crop_size", 0) or 0)
    if not self.directions and not self.generative:
      raise run_lib.RunError(
          f"{run.workdir}: a {run.config.task!r} run neither translates nor "
          "generates images; the demo has nothing to show for it.")

  @property
  def name(self) -> str:
    task = self.run.config.task
    size = f", {self.res} px" if self.directions else ""
    return (f"{os.path.basename(self.run.workdir)} — "
            f"{TASK_NAMES.get(task, task)}, step {self.run.step}{size}")

  def describe(self) -> dict:
    """What the page needs to build its controls for this model."""
    return {"id": self.id, "name": self.name, "task": self.run.config.task,
            "workdir": self.run.workdir, "step": self.run.step,
            "which": self.run.which, "resolution": self.res,
            "directions": [{"id": d, "name": DIRECTION_NAMES.get(d, d)}
                           for d in self.directions],
            "num_classes": self.num_classes, "class_names": self.class_names,
            "generative": self.generative,
            "selections": [{"id": s, "name": SELECT_NAMES.get(s, s)}
                           for s in self.selections],
            "candidates": SELECT_CANDIDATES}

  def _input_channels(self, direction: str) -> int:
    if direction:  # CycleGAN converts its inputs' channels itself.
      return 3
    # One-way translation (pix2pix): channels = (sketch, photo).
    return int(self.run.task.channels[0])

  def translate(self, image, direction: str, label: int,
                size: Tuple[int, int]) -> bytes:
    """An RGB PIL image -> the translated PNG at `size` (w, h)."""
    x = images.to_model_input(image, self.res, self._input_channels(direction))
    y = np.asarray(self.run.translate(jnp.asarray(x), direction,
                                      label=self._labels(label, 1)))
    return images.to_png(images.to_uint8(y[0], signed=True), size)

  def label(self, query: Dict[str, str]) -> int:
    """The request's class index (0 unless given; refused out of range)."""
    return _int(query, "label", 0, 0, max(self.num_classes - 1, 0))

  def _labels(self, label: int, num: int):
    """`num` copies of `label` for a class-conditional model, else None."""
    return jnp.full((num,), label, jnp.int32) if self.num_classes else None

  def sample(self, seed: int, num: int, label: int = 0, select: str = "",
             candidates: int = SELECT_CANDIDATES) -> bytes:
    """A PNG grid of `num` generated images.

    Args:
      seed: the noise seed; the same seed gives the same images.
      num: images in the grid.
      label: the class of every image where the model is class-conditional.
      select: "" (each image one draw), or one of `self.selections`: each
        image the best of `candidates` draws by that score of the model's
        discriminator (jaxgen.sample.draw).
      candidates: draws per image with `select`.

    Returns:
      The PNG's bytes.
    """
    if select:
      out = sample_lib.draw(
          self.run, num, seed, batch_size=num, select=select,
          candidates=candidates, label=label if self.num_classes else None)
    else:
      out = np.asarray(self.run.generate(jax.random.key(seed), num,
                                         labels=self._labels(label, num)))
    return images.to_png(reporting.make_grid(out, cols=math.isqrt(num - 1) + 1))

  def selection(self, query: Dict[str, str]) -> Tuple[str, int]:
    """The request's (select, candidates); ("", 0) unless it asks for one."""
    select = query.get("select", "")
    if not select:
      return "", 0
    if select not in self.selections:
      offered = (f"it offers {', '.join(self.selections)}"
                 if self.selections else "it has no discriminator to rank by")
      raise RequestError(f"{self.name} cannot pick samples by {select!r}; "
                         f"{offered}.")
    return select, _int(query, "candidates", SELECT_CANDIDATES, 2,
                        MAX_SELECT_CANDIDATES)

  def warm_up(self):
    """Compiles every function the page can call, so no user waits for it."""
    for direction in self.directions:
      x = np.zeros((1, self.res, self.res, self._input_channels(direction)),
                   np.float32)
      jax.block_until_ready(self.run.translate(jnp.asarray(x), direction,
                                               label=self._labels(0, 1)))
    if self.generative:
      jax.block_until_ready(self.run.generate(
          jax.random.key(0), SAMPLE_NUM, labels=self._labels(0, SAMPLE_NUM)))
    if self.selections:  # One call of D scores every selection.
      self.sample(0, SAMPLE_NUM, select=self.selections[0], candidates=2)


def _int(query: Dict[str, str], key: str, default: int, lo: int,
         hi: int) -> int:
  raw = query.get(key, "")
  try:
    value = int(raw) if raw != "" else default
  except ValueError as e:
    raise RequestError(f"{key} must be a whole number, got {raw!r}.") from e
  if not lo <= value <= hi:
    raise RequestError(f"{key} must be between {lo} and {hi}, got {value}.")
  return value


class DemoApp:
  """The demo's state (models, limits) and its request handler.

  Attributes:
    models: {id: Model}, in the order the workdirs were given.
    max_bytes: the largest upload accepted.
    max_pixels: the largest width * height of an upload.
    max_output_side: results are returned at the input's size, capped so
      that their longer side is at most this.
  """

  def __init__(self, models: Sequence[Model],
               max_bytes: int = images.MAX_BYTES,
               max_pixels: int = images.MAX_PIXELS,
               max_output_side: int = images.MAX_OUTPUT_SIDE):
    self.models = {m.id: m for m in models}
    self.max_bytes, self.max_pixels = int(max_bytes), int(max_pixels)
    self.max_output_side = int(max_output_side)
    images.set_pillow_limit(self.max_pixels)
    with open(PAGE, "rb") as f:
      self.page = f.read()
    self._lock = threading.Lock()

  def describe(self) -> dict:
    return {"models": [m.describe() for m in self.models.values()],
            "max_bytes": self.max_bytes, "max_pixels": self.max_pixels,
            "max_output_side": self.max_output_side}

  def handle(self, method: str, target: str, body: bytes = b"") -> Response:
    """One request -> one response; never raises.

    Args:
      method: "GET" or "POST" ("HEAD" is answered like GET by the server).
      target: the path with its query string, e.g. "/api/translate?model=0".
      body: the request body (the upload for /api/translate).

    Returns:
      The Response.
    """
    url = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    routes = {("GET", "/"): lambda: Response(200, "text/html; charset=utf-8",
                                             self.page),
              ("GET", "/healthz"): lambda: Response(200, "text/plain",
                                                    b"ok\n"),
              ("GET", "/api/models"): lambda: _json(self.describe()),
              ("POST", "/api/translate"): lambda: self._translate(query, body),
              ("POST", "/api/sample"): lambda: self._sample(query)}
    path = "/" if url.path == "/index.html" else url.path
    route = routes.get((method, path))
    if route is None:
      known = any(p == path for _, p in routes)
      return _error(f"{method} {path} is not part of the demo.",
                    405 if known else 404)
    try:
      return route()
    except (RequestError, images.ImageError) as e:
      logging.info("%s %s refused: %s", method, path, e)
      return _error(str(e), e.status)
    except Exception as e:  # pylint: disable=broad-except
      # The page gets a sentence; the log gets the traceback.
      logging.exception("%s %s failed", method, target)
      return _error(f"The model failed on this input ({type(e).__name__}); "
                    "the server log has the details.", 500)

  def _model(self, query: Dict[str, str]) -> Model:
    model_id = query.get("model", next(iter(self.models)))
    if model_id not in self.models:
      raise RequestError(f"No model {model_id!r}; loaded: "
                         f"{', '.join(self.models)}.", 404)
    return self.models[model_id]

  def _translate(self, query: Dict[str, str], body: bytes) -> Response:
    model = self._model(query)
    if not model.directions:
      raise RequestError(f"{model.name} does not translate images; sample "
                         "a grid instead.")
    direction = query.get("direction", model.directions[0])
    if direction not in model.directions:
      raise RequestError(f"{model.name} has no direction {direction!r}; "
                         f"valid: {model.directions}.")
    label = model.label(query)
    image = images.decode(body, self.max_bytes, self.max_pixels)
    size = images.output_size(image.size, self.max_output_side)
    start = time.perf_counter()
    with self._lock:
      png = model.translate(image, direction, label, size)
    seconds = time.perf_counter() - start
    return Response(200, "image/png", png,
                    {"X-Jaxgen-Seconds": f"{seconds:.3f}",
                     "X-Jaxgen-Input-Size": "x".join(map(str, image.size))})

  def _sample(self, query: Dict[str, str]) -> Response:
    model = self._model(query)
    if not model.generative:
      raise RequestError(f"{model.name} translates images; it does not "
                         "sample them.")
    seed = _int(query, "seed", 0, 0, 2 ** 31 - 1)
    num = _int(query, "num", SAMPLE_NUM, 1, MAX_SAMPLE_NUM)
    label = model.label(query)
    select, candidates = model.selection(query)
    start = time.perf_counter()
    with self._lock:
      png = model.sample(seed, num, label, select, candidates)
    return Response(200, "image/png", png, {
        "X-Jaxgen-Seconds": f"{time.perf_counter() - start:.3f}"})


def load_models(workdirs: Sequence[str], which: Optional[str] = None,
                warm_up: bool = True) -> List[Model]:
  """Restores each workdir's run (see jaxgen.run.load) as a Model.

  Args:
    workdirs: run folders, shown on the page in this order.
    which: "best" or "latest"; None picks best where a run kept one.
    warm_up: compile each model's functions now rather than on first use.

  Returns:
    The Models, with ids "0", "1", ...

  Raises:
    jaxgen.run.RunError: a workdir that cannot be loaded or shown.
  """
  if not workdirs:
    raise run_lib.RunError("Give at least one --workdir of a trained run.")
  models = []
  for i, workdir in enumerate(workdirs):
    model = Model(run_lib.load(workdir, which), str(i))
    if warm_up:
      start = time.perf_counter()
      model.warm_up()
      logging.info("Loaded and compiled %s in %.1f s.", model.name,
                   time.perf_counter() - start)
    models.append(model)
  return models


class _Handler(http.server.BaseHTTPRequestHandler):
  """Reads a request within the byte limit and writes DemoApp's answer."""

  app: DemoApp = None  # Set on the subclass made by make_server.
  timeout = 60  # Seconds a slow client may hold a thread.

  def _answer(self, method: str):
    body = b""
    if method == "POST":
      length = self.headers.get("Content-Length")
      if length is None or not length.isdigit():
        self._send(_error("A POST needs a Content-Length.", 411))
        return
      length = int(length)
      try:
        images.check_size(length, self.app.max_bytes)
      except images.ImageError as e:
        if length <= _MAX_DRAIN:
          self._drain(length)
        self.close_connection = True
        self._send(_error(str(e), e.status))
        return
      body = self.rfile.read(length)
    self._send(self.app.handle(method, self.path, body),
               with_body=self.command != "HEAD")

  def _drain(self, length: int):
    while length > 0:
      chunk = self.rfile.read(min(length, 1 << 20))
      if not chunk:
        return
      length -= len(chunk)

  def _send(self, response: Response, with_body: bool = True):
    self.send_response(response.status)
    self.send_header("Content-Type", response.content_type)
    self.send_header("Content-Length", str(len(response.body)))
    for key, value in {**_HEADERS, **response.headers}.items():
      self.send_header(key, value)
    self.end_headers()
    if with_body:
      self.wfile.write(response.body)

  def do_GET(self):  # pylint: disable=invalid-name
    self._answer("GET")

  def do_HEAD(self):  # pylint: disable=invalid-name
    self._answer("GET")

  def do_POST(self):  # pylint: disable=invalid-name
    self._answer("POST")

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.info("%s %s", self.address_string(), format % args)


def make_server(app: DemoApp, host: str = "127.0.0.1",
                port: int = 7860) -> http.server.ThreadingHTTPServer:
  """An HTTP server for `app` (not started; port 0 picks a free port).

  Args:
    app: the DemoApp.
    host: the interface to bind; 127.0.0.1 keeps the demo on this machine.
    port: the TCP port.

  Returns:
    The server: call `serve_forever()` (in a thread, from a notebook) and
    `shutdown()`; `server_address` holds the bound (host, port).
  """
  handler = type("Handler", (_Handler,), {"app": app})
  server = http.server.ThreadingHTTPServer((host, port), handler)
  server.daemon_threads = True
  return server
