"""Every notebook in colabs/ runs end to end on the CPU, as committed.

Each notebook is executed cell by cell in a fresh python3 kernel of this
interpreter (nbclient), from a temporary folder, with this checkout on its
path and the test session's XLA compilation cache and flags (tests/clis.py).
The notebooks read two environment variables: JAXGEN_NOTEBOOK_WORKDIR, where
their runs go (inspected here), and JAXGEN_NOTEBOOK_VARIANT, the configs'
variant ("tiny"). A failing cell fails the test with its traceback.
"""

import glob
import os
import re
import time

import jupyter_client
from jupyter_client import kernelspec
import nbclient
from nbclient.exceptions import CellExecutionError
import nbformat
import pytest

from tests import clis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))
CELL_TIMEOUT = 300      # Seconds for one cell...
NOTEBOOK_TIMEOUT = 600  # ...and for all the cells of a notebook.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # The colours of IPython tracebacks.


def _name(path: str) -> str:
  return os.path.basename(path)


def _kernel_manager() -> jupyter_client.AsyncKernelManager:
  """A python3 kernel of this interpreter, whatever kernelspecs are
  installed: with no kernel folders to search, jupyter_client falls back to
  ipykernel's own spec, which runs sys.executable."""
  specs = kernelspec.KernelSpecManager(kernel_dirs=[])
  return jupyter_client.AsyncKernelManager(kernel_name="python3",
                                           kernel_spec_manager=specs)


def test_there_are_notebooks():
  assert NOTEBOOKS, "no notebooks in colabs/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_is_committed_clean(path):
  """Valid nbformat 4, without outputs or execution counts."""
  nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
  assert nb.nbformat == 4
  nbformat.validate(nb)
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
      assert not cell.outputs, f"cell {i} of {_name(path)} has outputs"
      assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_runs_end_to_end(path, tmp_path):
  """Every cell runs; the runs and pictures it promises are there."""
  nb = nbformat.read(path, as_version=4)
  workdir = tmp_path / "runs"
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = clis.env()
  env.update(JAXGEN_REPO=ROOT, JAXGEN_NOTEBOOK_WORKDIR=str(workdir),
             JAXGEN_NOTEBOOK_VARIANT="tiny")
  deadline = time.monotonic() + NOTEBOOK_TIMEOUT

  def cell_timeout(cell):
    del cell
    return max(1, min(CELL_TIMEOUT, int(deadline - time.monotonic())))

  client = nbclient.NotebookClient(
      nb, km=_kernel_manager(), timeout_func=cell_timeout,
      startup_timeout=120, allow_errors=False, record_timing=False,
      resources={"metadata": {"path": str(cwd)}})
  # A cell that raises or runs past its time fails here, with its source
  # and traceback in the message.
  try:
    client.execute(env=env)
  except CellExecutionError as e:
    pytest.fail(f"{_name(path)}: {_ANSI.sub('', str(e))}", pytrace=False)

  # Cells ran and showed pictures: sample grids, loss plots, translations.
  images = [o for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if "image/png" in o.get("data", {})]
  assert images, f"{_name(path)} displayed no image"
  # Every run the notebook trained is complete in the workdir it was given.
  runs = sorted(os.path.dirname(p) for p in
                glob.glob(str(workdir / "*" / "config.json")))
  assert runs, f"{_name(path)} trained nothing in {workdir}"
  for run in runs:
    assert os.listdir(os.path.join(run, "checkpoints")), run
    assert os.path.getsize(os.path.join(run, "loss.png")) > 1000, run
    assert glob.glob(os.path.join(run, "samples", "*_latest.png")), run
  # Nothing went to the kernel's working folder.
  assert not os.listdir(cwd), os.listdir(cwd)
