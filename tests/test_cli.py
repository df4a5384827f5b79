"""Errors a user can act on: one or two lines, no traceback, exit 1 or 2.

Most cases call a CLI's `main(argv)` in this process (the same code path as
`python -m`, without a new interpreter per case); one train case runs in a
subprocess to check what a user sees on stderr.
"""

import os

from absl import flags
import jax
import numpy as np
from PIL import Image
import pytest

from jaxgen import checkpoint as ckpt_lib
from jaxgen import cli
from jaxgen import configlib
from jaxgen import evaluate
from jaxgen import main as train_main
from jaxgen import run as run_lib
from jaxgen import sample
from jaxgen import tasks as tasks_lib
from jaxgen import train
from jaxgen import translate
from tests import clis

ROOT = clis.ROOT
VAE = os.path.join(ROOT, "configs", "vae.py")
CGAN = os.path.join(ROOT, "configs", "cgan.py")


@pytest.fixture(scope="session")
def vae_workdir(tmp_path_factory):
  """A workdir holding a checkpoint of an (untrained) vae.py:tiny model.

  Only the checkpoint matters to these tests, so the state is saved straight
  from `init_state` rather than trained.
  """
  workdir = str(tmp_path_factory.mktemp("vae"))
  config = configlib.load_config_file(VAE + ":tiny")
  state = tasks_lib.get_task(config).init_state(jax.random.key(0))
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(1, state, {}, config)
  ckpt.wait()
  ckpt.close()
  return workdir


def _err(capsys):
  """stderr so far; it must hold one "Error:" line and no traceback."""
  err = capsys.readouterr().err
  assert "Traceback" not in err
  assert len([l for l in err.splitlines() if l.startswith("Error:")]) == 1
  return err


def test_user_errors_and_bugs_are_told_apart():
  def raised(error):
    try:
      raise error
    except Exception as e:  # pylint: disable=broad-except
      return e

  assert cli.is_user_error(run_lib.RunError("x"))
  assert cli.is_user_error(FileNotFoundError("x"))
  assert cli.is_user_error(cli.UserError("x"))
  # jaxgen's own checks (config, data) raise ValueError with a message.
  with pytest.raises(ValueError) as e:
    configlib.parse_arg("bogus", demo=False)
  assert cli.is_user_error(e.value)
  # The same types from elsewhere (here: this file, or jax) are bugs.
  assert not cli.is_user_error(raised(ValueError("x")))
  assert not cli.is_user_error(raised(KeyError("x")))
  try:
    jax.numpy.concatenate([])
  except ValueError as e:
    assert not cli.is_user_error(e)
  else:
    raise AssertionError("jax accepted an empty concatenate")


def test_train_on_a_workdir_of_another_task(vae_workdir):
  before = sorted(os.listdir(vae_workdir))
  proc = clis.run("jaxgen.main", f"--config={CGAN}:tiny",
                  f"--workdir={vae_workdir}", timeout=300)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
  assert len(lines) == 1
  assert "holds a 'vae' run" in lines[0] and "task: 'vae' -> 'cgan'" in lines[0]
  assert "Use a new --workdir" in lines[0]
  assert sorted(os.listdir(vae_workdir)) == before  # Nothing written.


def test_train_with_a_changed_architecture(vae_workdir, capsys):
  assert train_main.main([f"--config={VAE}:tiny", f"--workdir={vae_workdir}",
                          "--config.model.width=8",
                          "--config.model.latent_dim=3"]) == 1
  err = _err(capsys)
  assert "model.latent_dim: 4 -> 3; model.width: 4 -> 8" in err
  # A change outside config.model that changes shapes fails at the restore,
  # with the same advice instead of orbax's array dumps.
  assert train_main.main([f"--config={VAE}:tiny", f"--workdir={vae_workdir}",
                          "--config.data.res=32"]) == 1
  err = _err(capsys)
  assert "does not fit the model of the new config" in err
  assert "Use a new workdir" in err


def _paired_folder(root, corrupt_first=False):
  rng = np.random.default_rng(0)
  for kind, mode in (("sketches", "L"), ("photos", "RGB")):
    os.makedirs(os.path.join(root, "train", kind))
    for name in ("a", "b", "c"):
      shape = (20, 20) if mode == "L" else (20, 20, 3)
      Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(
          os.path.join(root, "train", kind, f"{name}.png"))
  if corrupt_first:
    with open(os.path.join(root, "train", "sketches", "a.png"), "wb") as f:
      f.write(b"not a png")


def test_train_data_and_config_errors(tmp_path, capsys):
  workdir = str(tmp_path / "run")

  def train_cli(config, *extra):
    return train_main.main([f"--config={config}", f"--workdir={workdir}",
                            *extra])

  assert train_cli(f"{CGAN}:res=16,root={tmp_path / 'nope'}") == 1
  assert "paired dataset root" in _err(capsys)
  empty = tmp_path / "empty"
  empty.mkdir()
  assert train_cli(f"{CGAN}:res=16,root={empty}") == 1
  assert "has no train/ split" in _err(capsys)
  _paired_folder(str(tmp_path / "bad"), corrupt_first=True)
  assert train_cli(f"{CGAN}:res=16,root={tmp_path / 'bad'}") == 1
  err = _err(capsys)
  assert "cannot identify image file" in err and "a.png" in err
  assert train_cli(f"{CGAN}:tiny,bogus") == 2
  assert "Unknown config option 'bogus'" in _err(capsys)
  assert train_cli(os.path.join(ROOT, "configs", "nope.py")) == 1
  assert "No config file" in _err(capsys)
  # --verbose: the traceback (here: the exception itself, in-process).
  with pytest.raises(FileNotFoundError, match="paired dataset root"):
    train_cli(f"{CGAN}:res=16,root={tmp_path / 'nope'}", "--verbose")


def test_bugs_keep_their_traceback(tmp_path, monkeypatch):
  def broken(config, workdir):
    del config, workdir
    return {}["missing"]

  monkeypatch.setattr(train, "train_and_evaluate", broken)
  with pytest.raises(KeyError):
    train_main.main([f"--config={VAE}:tiny", f"--workdir={tmp_path}"])


@pytest.mark.parametrize("module", [sample, translate, evaluate])
def test_missing_checkpoint_and_bad_flags(module, tmp_path, capsys):
  args = {sample: ["--out", str(tmp_path / "out")],
          translate: ["--out", str(tmp_path / "out"), "--input", ROOT],
          evaluate: []}[module]
  assert module.main(["--workdir", str(tmp_path)] + args) == 1
  assert "No latest checkpoint" in _err(capsys)
  assert module.main(["--workdir", str(tmp_path / "nope")] + args) == 1
  assert "No workdir" in _err(capsys)
  assert not os.path.exists(tmp_path / "out")
  assert module.main(["--workdir", str(tmp_path), "--bogus=1"] + args) == 2
  assert "bogus" in _err(capsys)
  assert module.main(["--help"]) == 0
  assert "--workdir" in capsys.readouterr().out


def test_positional_arguments(capsys):
  def define(fv, argv):
    del argv
    flags.DEFINE_integer("size", 0, "A flag.", flag_values=fv)

  got = []

  def run(argv):
    return cli.run(lambda fv, src, dst: got.append((src, dst, fv.size)),
                   define, argv, "Doc.", positional=("src", "dst"))

  # Before, between and after the flags; `--` ends the flags.
  assert run(["a", "--size", "3", "b"]) == 0
  assert run(["--size=4", "a", "b"]) == 0
  assert run(["a", "--", "-b"]) == 0
  assert got == [("a", "b", 3), ("a", "b", 4), ("a", "-b", 0)]
  assert run(["a"]) == 2
  err = _err(capsys)
  assert "expected 2 positional argument(s) SRC DST, got 1: a" in err
  assert run(["a", "b", "c"]) == 2
  assert "SRC DST, got 3" in _err(capsys)
  assert run(["--help"]) == 0
  assert "Doc." in capsys.readouterr().out
  # Without `positional`, a CLI takes none.
  assert cli.run(lambda fv: None, define, ["a"], "Doc.") == 2
  assert "unexpected arguments: a" in _err(capsys)
  assert len(got) == 3
