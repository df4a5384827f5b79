"""What a run leaves for people: sample grids, a metrics history, loss plots.

TensorBoard events and console lines go through clu metric writers; this
module adds PNG grids, a JSONL history (the source of the loss-curve PNG,
which survives resumes) and the plot itself.

Paths may be local or any filesystem etils.epath knows (e.g. `gs://` on a
Cloud TPU VM), so a run's outputs land next to its checkpoints.
"""

import io
import json
import os
from typing import Dict, Iterable, Optional

from etils import epath
import numpy as np
from PIL import Image


def workdir_path(path: str) -> str:
  """An absolute local path, or a URL (gs://...) unchanged."""
  return path if "://" in path else os.path.abspath(path)


def _write_bytes(path: str, data: bytes) -> None:
  p = epath.Path(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  p.write_bytes(data)


def make_grid(images, cols: int = 8, pad: int = 2, pad_value: float = 0.5
              ) -> np.ndarray:
  """Tiles images into one uint8 picture.

  Args:
    images: [n, h, w, c] floats in [0, 1] (c = 1 or 3).
    cols: images per row.
    pad: pixels between tiles.
    pad_value: grey level of the padding.

  Returns:
    uint8 [H, W, c] grid.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  cols = max(1, min(cols, n))
  rows = -(-n // cols)
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c),
                 pad_value, np.float32)
  for i, img in enumerate(images):
    r, k = divmod(i, cols)
    y, x = pad + r * (h + pad), pad + k * (w + pad)
    grid[y:y + h, x:x + w] = img
  return np.round(grid * 255).astype(np.uint8)


def save_png(path: str, grid: np.ndarray) -> str:
  """Writes a uint8 [H, W, 1|3] array as PNG; returns the path."""
  arr = grid[..., 0] if grid.shape[-1] == 1 else grid
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="PNG")
  _write_bytes(path, buf.getvalue())
  return path


class History:
  """Append-only JSONL of {"step", metrics...}, trimmed on resume.

  Local files are appended to; on object stores (gs://), which cannot
  append, the file is rewritten from the rows kept in memory.
  """

  def __init__(self, path: str):
    self.path = path
    self._append = "://" not in path
    self._rows = None if self._append else self.read()

  def trim(self, step: int) -> None:
    """Drops entries after `step` (they belong to a run that was lost)."""
    kept = [r for r in self.read() if r["step"] <= step]
    if not self._append:
      self._rows = kept
    self._write(kept, "w")

  def _write(self, rows, mode):
    with epath.Path(self.path).open(mode) as f:
      f.write("".join(json.dumps(r) + "\n" for r in rows))

  def append(self, step: int, scalars: Dict[str, float]) -> None:
    row = {"step": int(step)}
    row.update({k: float(v) for k, v in scalars.items()})
    if self._append:
      self._write([row], "a")
    else:
      self._rows.append(row)
      self._write(self._rows, "w")

  def read(self):
    path = epath.Path(self.path)
    if not path.exists():
      return []
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip()]


def plot_history(rows: Iterable[dict], path: str,
                 title: Optional[str] = None) -> Optional[str]:
  """Plots every train/ and eval/ series, one panel per metric name.

  Args:
    rows: history rows as written by History.
    path: output PNG.
    title: figure title.

  Returns:
    The path, or None when there is nothing to plot.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  series: Dict[str, Dict[str, list]] = {}
  for row in rows:
    for key, value in row.items():
      if key == "step" or "/" not in key:
        continue
      split, name = key.split("/", 1)
      if split not in ("train", "eval") or name in ("steps_per_sec", "lr"):
        continue
      xs_ys = series.setdefault(name, {}).setdefault(split, ([], []))
      xs_ys[0].append(row["step"])
      xs_ys[1].append(value)
  if not series:
    return None
  names = sorted(series)
  cols = min(3, len(names))
  rows_n = -(-len(names) // cols)
  fig, axes = plt.subplots(rows_n, cols, figsize=(4.5 * cols, 3.2 * rows_n),
                           squeeze=False)
  for ax, name in zip(axes.flat, names):
    for split, (xs, ys) in sorted(series[name].items()):
      ax.plot(xs, ys, label=split, marker="o" if split == "eval" else None,
              markersize=3)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=90)
  plt.close(fig)
  _write_bytes(path, buf.getvalue())
  return path
