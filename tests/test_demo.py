"""The web demo: limits and errors over HTTP, and the page in headless Chromium.

Four tiny runs (a pix2pix, a CycleGAN, a VAE and a class-conditional Siamese
GAN with AC-GAN's class head) are built once for the module: their stored
configs are the real ones, their weights are drawn with numpy onto
`jax.eval_shape` of the task's state instead of by training or the
initialisers (both compile for tens of seconds on a loaded 2-core CPU), and
the demo restores them with jaxgen.run.load like any trained run.
"""

import http.client
import io
import json
import os
import shutil
import struct
import urllib.error
import urllib.request
import zlib

import jax
import numpy as np
from PIL import Image
import pytest

from jaxgen import checkpoint as ckpt_lib
from jaxgen import configlib
from jaxgen import demo
from jaxgen import reporting
from jaxgen import sample
from jaxgen import tasks
from jaxgen.data import faces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_BYTES = 300_000
MAX_PIXELS = 1_000_000
# The flags the demo's browser runs with: headless, and nothing that calls
# out (updates, sync, background networking).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-quic",
                  # A synthetic camera that needs no permission prompt.
                  "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream"]


def _build_run(spec: str, workdir: str) -> str:
  """Saves a checkpoint of `spec`'s task with fixed pseudo-random weights."""
  config = configlib.load_config_file(os.path.join(ROOT, "configs", spec))
  shapes = jax.eval_shape(tasks.get_task(config).init_state,
                          jax.random.key(0))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if not np.issubdtype(leaf.dtype, np.floating):
      return np.zeros(leaf.shape, leaf.dtype)
    if name.endswith(("['var']", "['scale']")):  # Norm scales, BN variances.
      return np.ones(leaf.shape, leaf.dtype)
    return (0.2 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  state = jax.tree_util.tree_map_with_path(fill, shapes)
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(0, state, {}, config)
  ckpt.wait()
  ckpt.close()
  return workdir


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  root = tmp_path_factory.mktemp("demo")
  workdirs = [_build_run("cgan.py:tiny", str(root / "pix2pix")),
              _build_run("cyclegan.py:tiny", str(root / "cyclegan")),
              _build_run("vae.py:tiny", str(root / "vae")),
              _build_run("siamese_gan.py:tiny,cond,ac",
                         str(root / "sgan_cond"))]
  pillow_limit = Image.MAX_IMAGE_PIXELS
  app = demo.make_app(workdirs, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
  srv = demo.start(app, "127.0.0.1", 0)
  yield srv
  srv.shutdown()
  srv.server_close()
  Image.MAX_IMAGE_PIXELS = pillow_limit  # The app sets it process-wide.


def _png(image: Image.Image) -> bytes:
  out = io.BytesIO()
  image.save(out, format="PNG")
  return out.getvalue()


def _face(width=60, height=44) -> Image.Image:
  """A procedural face photo, deliberately not square."""
  pixels = np.uint8(np.round(faces.render_face(3, 64) * 255))
  return Image.fromarray(pixels).resize((width, height))


def _post(srv, path: str, body: bytes):
  """(status, content type, body) of a POST to the live server."""
  request = urllib.request.Request(demo.url(srv) + path.lstrip("/"),
                                   data=body, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=60) as r:
      return r.status, r.headers["Content-Type"], r.read()
  except urllib.error.HTTPError as e:
    return e.code, e.headers["Content-Type"], e.read()


def _error(srv, path: str, body: bytes, status: int) -> str:
  got, kind, payload = _post(srv, path, body)
  assert (got, kind) == (status, "application/json"), payload[:200]
  message = json.loads(payload)["error"]
  assert "Traceback" not in message and message.endswith(".")
  return message


def _png_header(width: int, height: int) -> bytes:
  """A PNG that declares `width` x `height` and holds no pixel data."""
  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data)))
  return (b"\x89PNG\r\n\x1a\n" +
          chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0,
                                     0)) + chunk(b"IEND", b""))


# HTTP, no browser.


def test_models_page_and_translation_over_http(server):
  with urllib.request.urlopen(demo.url(server), timeout=30) as r:
    page = r.read().decode()
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
  assert 'id="pad"' in page and 'type="file"' in page
  assert "http://" not in page and "https://" not in page  # Works offline.
  with urllib.request.urlopen(demo.url(server) + "api/models") as r:
    info = json.loads(r.read())
  names = [(m["task"], [d["id"] for d in m["directions"]])
           for m in info["models"]]
  assert names == [("cgan", [""]), ("cyclegan", ["BtoA", "AtoB"]),
                   ("vae", []), ("siamese_gan", [])]
  assert [(m["num_classes"], m["class_names"]) for m in info["models"]] == [
      (0, []), (0, []), (0, []), (2, ["cat", "dog"])]
  assert [[s["id"] for s in m["selections"]] for m in info["models"]] == [
      [], [], [], ["real", "class"]]
  face = _face()
  for query, mode in [("model=0", "RGB"), ("model=1&direction=AtoB", "L"),
                      ("model=1&direction=BtoA", "RGB")]:
    status, kind, body = _post(server, "/api/translate?" + query, _png(face))
    assert (status, kind) == (200, "image/png")
    out = Image.open(io.BytesIO(body))
    assert (out.size, out.mode) == (face.size, mode)
  # 16 samples of 16 px in a 4 x 4 grid with 2 px gaps.
  status, kind, body = _post(server, "/api/sample?model=2&seed=3", b"")
  assert (status, kind) == (200, "image/png")
  assert Image.open(io.BytesIO(body)).size == (74, 74)


def _sample_pixels(srv, query: str) -> np.ndarray:
  status, kind, body = _post(srv, "/api/sample?" + query, b"")
  assert (status, kind) == (200, "image/png"), body[:200]
  return np.asarray(Image.open(io.BytesIO(body)))


def test_a_class_conditional_run_samples_the_class_asked_for(server):
  cat = _sample_pixels(server, "model=3&seed=5&num=4&label=0")
  dog = _sample_pixels(server, "model=3&seed=5&num=4&label=1")
  assert cat.shape == dog.shape == (38, 38, 3)  # 2 x 2 of 16 px, 2 px gaps.
  # Same seed, same codes: only the class differs, and it changes the images.
  assert np.abs(cat.astype(int) - dog.astype(int)).mean() > 1
  np.testing.assert_array_equal(
      cat, _sample_pixels(server, "model=3&seed=5&num=4&label=0"))
  # The label is cat unless asked otherwise.
  np.testing.assert_array_equal(
      cat, _sample_pixels(server, "model=3&seed=5&num=4"))
  assert "label must be between 0 and 1, got 2" in _error(
      server, "/api/sample?model=3&label=2", b"", 400)


def test_samples_picked_by_the_discriminator_are_jaxgen_sample_s(server):
  run = server.RequestHandlerClass.app.models["3"].run
  for select, label in [("class", 1), ("real", 0)]:
    got = _sample_pixels(
        server, f"model=3&seed=5&num=4&label={label}&select={select}&"
        "candidates=3")
    want = sample.draw(run, 4, seed=5, batch_size=4, label=label,
                       select=select, candidates=3)
    np.testing.assert_array_equal(got, reporting.make_grid(want, cols=2))
  plain = _sample_pixels(server, "model=3&seed=5&num=4&label=1")
  picked = _sample_pixels(server, "model=3&seed=5&num=4&label=1&select=class")
  assert np.abs(plain.astype(int) - picked.astype(int)).mean() > 1
  # Refused, each with one sentence: a score the run has no head for, a
  # run without a discriminator, too few or too many candidates.
  assert "cannot pick samples by 'best'; it offers real, class" in _error(
      server, "/api/sample?model=3&select=best", b"", 400)
  assert "it has no discriminator to rank by" in _error(
      server, "/api/sample?model=2&select=real", b"", 400)
  for n in (1, 17):
    assert "candidates must be between 2 and 16" in _error(
        server, f"/api/sample?model=3&select=real&candidates={n}", b"", 400)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "CMYK", "1"])
def test_any_mode_is_accepted(server, mode):
  image = _face(33, 21).convert(mode if mode != "I;16" else "L")
  if mode == "I;16":
    image = Image.fromarray(np.asarray(image, np.uint16) * 257)
  fmt = "JPEG" if mode == "CMYK" else "PNG"
  out = io.BytesIO()
  image.save(out, format=fmt)
  status, _, body = _post(server, "/api/translate?model=0", out.getvalue())
  assert status == 200
  assert Image.open(io.BytesIO(body)).size == (33, 21)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_refused_uploads_say_why(server):
  translate = "/api/translate?model=0"
  assert "not an image" in _error(server, translate, b"hello, world", 400)
  assert "empty" in _error(server, translate, b"", 400)
  png = _png(_face())
  assert "damaged or truncated" in _error(server, translate,
                                          png[:len(png) // 2], 400)
  # Too many pixels: refused from the header (a 2500 MP "bomb") and from
  # an ordinary file just over the limit.
  assert "too many pixels" in _error(server, translate,
                                     _png_header(50_000, 50_000), 413)
  big = _png(Image.new("L", (1001, 1000)))
  assert "1001 x 1000 px" in _error(server, translate, big, 413)
  too_long = os.urandom(MAX_BYTES + 1)
  assert "too large" in _error(server, translate, too_long, 413)
  assert "No model '7'" in _error(server, "/api/translate?model=7", png, 404)
  assert "no direction 'up'" in _error(
      server, "/api/translate?model=1&direction=up", png, 400)
  assert "does not sample" in _error(server, "/api/sample?model=1", b"", 400)
  assert "does not translate" in _error(server, "/api/translate?model=2",
                                        png, 400)
  assert "seed must be a whole number" in _error(
      server, "/api/sample?model=2&seed=x", b"", 400)
  assert "not part of the demo" in _error(server, "/api/nothing", b"", 404)


def test_a_failing_model_is_a_sentence_not_a_traceback(server, monkeypatch):
  model = server.RequestHandlerClass.app.models["0"]

  def broken(*args, **kwargs):
    raise RuntimeError("simulated failure deep in XLA")

  monkeypatch.setattr(model, "translate", broken)
  message = _error(server, "/api/translate?model=0", _png(_face()), 500)
  assert "failed on this input (RuntimeError)" in message
  assert "XLA" not in message


def test_declared_huge_body_is_refused_unread(server):
  host, port = server.server_address[:2]
  conn = http.client.HTTPConnection(host, port, timeout=30)
  conn.putrequest("POST", "/api/translate?model=0")
  conn.putheader("Content-Length", str(10 ** 12))
  conn.endheaders()
  response = conn.getresponse()
  assert response.status == 413
  assert response.getheader("X-Content-Type-Options") == "nosniff"
  assert "too large" in json.loads(response.read())["error"]
  conn.close()
  with urllib.request.urlopen(demo.url(server) + "healthz", timeout=30) as r:
    assert r.read() == b"ok\n"


# The page in a real browser.


def _chromium_path() -> str:
  path = (os.environ.get("JAXGEN_CHROMIUM") or shutil.which("chromium") or
          shutil.which("chromium-browser"))
  if not path:
    pytest.skip("Chromium is not installed (apt-get install chromium, or "
                "set JAXGEN_CHROMIUM to its executable).")
  return path


@pytest.fixture
def page(tmp_path):
  from playwright import sync_api  # pylint: disable=g-import-not-at-top
  executable = _chromium_path()
  with sync_api.sync_playwright() as pw:
    try:
      # A persistent context is how Playwright takes a --user-data-dir: a
      # fresh profile per test.
      context = pw.chromium.launch_persistent_context(
          str(tmp_path / "profile"), executable_path=executable,
          headless=True, args=CHROMIUM_FLAGS, accept_downloads=True,
          timeout=60_000)
    except sync_api.Error as e:
      pytest.skip(f"Chromium at {executable} did not start: "
                  f"{str(e).splitlines()[0]}")
    context.set_default_timeout(60_000)
    yield context.pages[0] if context.pages else context.new_page()
    context.close()


def _next_result(page, count: int) -> tuple:
  """Waits for the page's `count`-th result; returns its natural size."""
  page.wait_for_selector(f"#result[data-count='{count}']", state="attached")
  return tuple(page.eval_on_selector(
      "#result", "img => [img.naturalWidth, img.naturalHeight]"))


def _download(page) -> Image.Image:
  with page.expect_download() as download:
    page.click("#download")
  return Image.open(download.value.path())


def test_page_in_chromium(page, server, tmp_path):
  face = _face()
  face_path = tmp_path / "face.png"
  face.save(face_path)
  page.goto(demo.url(server))
  page.wait_for_selector("body[data-ready='1']", state="attached")
  assert page.locator("#model option").count() == 4
  assert page.is_hidden("#direction-field")  # pix2pix: one direction.

  # Upload -> pix2pix result at the input's size, different from it.
  page.set_input_files("#file", str(face_path))
  assert _next_result(page, 1) == face.size
  result = _download(page)
  assert result.size == face.size
  diff = np.abs(np.asarray(result.convert("RGB"), np.float32) -
                np.asarray(face, np.float32)).mean()
  assert diff > 5

  # CycleGAN: the same input is re-translated, then the other direction.
  page.select_option("#model", "1")
  assert _next_result(page, 2) == face.size
  assert page.is_visible("#direction-field")
  page.select_option("#direction", "AtoB")
  assert _next_result(page, 3) == face.size
  sketch = _download(page)
  assert sketch.mode == "L" and sketch.size == face.size

  # Sketch pad: a stroke is translated when the pen lifts.
  page.click("#tab-sketch")
  box = page.locator("#pad").bounding_box()
  page.mouse.move(box["x"] + 20, box["y"] + 20)
  page.mouse.down()
  page.mouse.move(box["x"] + box["width"] - 20, box["y"] + 60, steps=5)
  page.mouse.up()
  assert _next_result(page, 4) == (256, 256)

  # Webcam: Chromium's synthetic camera.
  page.click("#tab-webcam")
  page.click("#camera-start")
  page.wait_for_selector("#camera-shot:enabled")
  size = page.eval_on_selector(
      "#video", "v => [v.videoWidth, v.videoHeight]")
  page.click("#camera-shot")
  assert _next_result(page, 5) == tuple(size)

  # A corrupt upload: a sentence on the page, and the server keeps serving.
  page.click("#tab-upload")
  page.set_input_files("#file", files=[{
      "name": "broken.png", "mimeType": "image/png",
      "buffer": b"\x89PNG\r\n\x1a\n" + b"\0" * 64}])
  page.wait_for_selector("#error", state="visible")
  error = page.inner_text("#error")
  assert "not an image the demo can read" in error
  assert "Traceback" not in error
  page.set_input_files("#file", str(face_path))
  assert _next_result(page, 6) == face.size
  assert page.is_hidden("#error")

  # A generative run: no input, a sampled grid.
  page.select_option("#model", "2")
  assert page.is_hidden("#input-pane") and page.is_visible("#sample-pane")
  page.click("#sample")
  assert _next_result(page, 7) == (74, 74)
  assert page.is_hidden("#label-field")

  # A class-conditional one: a class selector; choosing a class redraws.
  page.select_option("#model", "3")
  assert page.is_visible("#label-field")
  assert page.eval_on_selector_all(
      "#label option", "os => os.map(o => o.textContent)") == ["cat", "dog"]
  page.click("#sample")
  assert _next_result(page, 8) == (74, 74)
  first = page.get_attribute("#result", "src")
  page.select_option("#label", "1")
  assert _next_result(page, 9) == (74, 74)
  assert page.get_attribute("#result", "src") != first
  assert page.get_attribute("#download", "download") == (
      "jaxgen-siamese_gan-seed0-dog.png")
  # Its discriminator can pick each image; choosing a score redraws.
  assert page.is_visible("#pick-field")
  assert page.eval_on_selector_all(
      "#pick option", "os => os.map(o => o.textContent)") == [
          "one draw", "best of 5 by D's real/fake score",
          "best of 5 by D's class head"]
  page.select_option("#pick", "class")
  assert _next_result(page, 10) == (74, 74)
  assert page.get_attribute("#download", "download") == (
      "jaxgen-siamese_gan-seed0-dog-best5-class.png")
  picked = np.asarray(_download(page).convert("RGB"))
  _, _, body = _post(server, "/api/sample?model=3&seed=0&label=1&"
                     "select=class&candidates=5", b"")
  np.testing.assert_array_equal(
      picked, np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
