"""benchmarks/bench.py: case discovery, one real (tiny) run per config, and
the table."""

import glob
import importlib.util
import math
import os

import pytest

from benchmarks import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(os.path.basename(p)
                      for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_every_config_is_a_case():
  cases = bench.discover_cases()
  assert sorted({c.split(":")[0] for c in cases}) == CONFIG_FILES
  assert "cgan.py:bench,res=128" in cases and "cgan.py:bench,res=256" in cases


def test_new_config_is_picked_up_without_edits(tmp_path):
  src = open(os.path.join(ROOT, "configs", "vae.py")).read()
  (tmp_path / "newtask.py").write_text(src)
  (tmp_path / "notaconfig.py").write_text("X = 1\n")
  assert bench.discover_cases(str(tmp_path)) == ["newtask.py:bench"]


@pytest.mark.parametrize("spec", bench.discover_cases())
def test_default_cases_need_no_files(spec):
  """Every default case builds its config on the offline generated data."""
  config = bench.load_case(spec, batch_size=4)
  assert config.train.batch_size == 4
  assert not config.data.get("root"), "bench cases must not need data files"


# The timing machinery is the same for every config; each config's PyTorch
# reference step is checked in tests/test_torch_refs.py. Two cases: a
# one-network task and the two-network CycleGAN, whose epoch-based schedule
# needs the data facts bench.py applies.
@pytest.mark.parametrize("config_file", ["vae.py", "cyclegan.py"])
def test_run_case_tiny(config_file):
  # A batch other than the config's own, to see that it is what was timed.
  batch = bench.load_case(f"{config_file}:tiny").train.batch_size + 1
  row = bench.run_case(f"{config_file}:tiny", steps=2, warmup=1,
                       batch_size=batch, with_torch=HAVE_TORCH,
                       input_batches=2)
  assert row["batch"] == batch
  for key in ("compile_s", "step_ms", "img_s", "peak_mb", "input_img_s",
              "loop_img_s"):
    assert math.isfinite(row[key]) and row[key] > 0, (key, row)
  assert row["img_s"] == pytest.approx(row["batch"] / row["step_ms"] * 1e3)
  assert row["gflop"] > 0
  if HAVE_TORCH:
    assert row["ratio"] == pytest.approx(row["torch_ms"] / row["step_ms"])


def test_table_and_errors(capsys):
  rows = [{"case": "a.py:bench", "batch": 8, "compile_s": 1.0, "step_ms": 2.0,
           "img_s": 4000.0, "peak_mb": 10.0, "input_img_s": 5.0,
           "loop_img_s": 3.0, "gflop": 1.0},
          {"case": "b.py:bench", "batch": 8, "error": "ValueError: boom"}]
  table = bench.format_table(rows).splitlines()
  assert table[0].split()[:4] == ["case", "batch", "compile_s", "step_ms"]
  assert "n/a" in table[1] and "4000.0" in table[1]
  assert "ERROR: ValueError: boom" in table[2]
  # An unknown variant is one error row naming the valid options; exit 1.
  assert bench.main(["--inline", "--cases", "vae.py:nosuch", "--steps",
                     "1"]) == 1
  out = capsys.readouterr().out
  assert "Unknown config option 'nosuch'" in out and "valid options" in out


def test_penalty_bench_per_penalty_and_family(capsys):
  """benchmarks/penalty_bench.py: one line per penalty asked for (the
  configured lowering only, to keep the compiles few), for the PatchGAN
  families too; bad flags are one usage error."""
  from benchmarks import penalty_bench  # pylint: disable=g-import-not-at-top
  tiny = ["--width=4", "--batch=2", "--impls=", "--reps=1"]
  assert penalty_bench.main(["--res=8", *tiny,
                             "--penalties=none,wgan_gp"]) == 0
  lines = capsys.readouterr().out.splitlines()[1:]
  assert [line.split()[:2] for line in lines] == [["none", "auto"],
                                                  ["wgan_gp", "auto"]]
  assert all(float(line.split()[2]) > 0 for line in lines)
  # The PatchGAN families' configs and batches (CycleGAN's step is the
  # costliest compile: without a penalty).
  for family, penalty in (("cgan", "r1"), ("cyclegan", "none")):
    assert penalty_bench.main([f"--family={family}", "--res=16", *tiny,
                               f"--penalties={penalty}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Train step, {family} 16 px")
    assert [line.split()[:2] for line in out[1:]] == [[penalty, "auto"]]
  assert penalty_bench.main(["--penalties=nosuch"]) == 2
  assert penalty_bench.main(["--family=cgan", "--alternation"]) == 2
  assert "--alternation times the DCGAN" in capsys.readouterr().err


def test_penalty_bench_alternation_traces_each_choice(monkeypatch, capsys):
  """--alternation: each schedule is built (and so traced) under the
  alternation it is labelled with, the backend's choice is restored after,
  and every line is timed against the chosen one. The step builder is
  replaced by a recorder: the steps themselves are the tested loop's."""
  from benchmarks import penalty_bench  # pylint: disable=g-import-not-at-top
  from jaxgen.tasks import gan_base  # pylint: disable=g-import-not-at-top
  original = gan_base.backend.select_not_cond
  built = []

  def stepper(config, calls):
    built.append(((config.gan.d_steps, config.gan.g_steps),
                  gan_base.backend.select_not_cond(), calls))
    return lambda: None
  monkeypatch.setattr(penalty_bench, "_stepper", stepper)
  assert penalty_bench.main(["--alternation", "--reps=1"]) == 0
  assert built == [((d, g), select, penalty_bench._CALLS)
                   for d, g in ((1, 1), (5, 1), (1, 2))
                   for select in (True, False)]
  assert gan_base.backend.select_not_cond is original
  lines = capsys.readouterr().out.splitlines()
  chosen = "select" if original() else "cond"
  assert f"(chosen: {chosen})" in lines[0]
  rows = [line.split() for line in lines[1:]]
  assert [r[:2] for r in rows] == [[s, h] for s in ("d_steps=1", "d_steps=5",
                                                    "g_steps=2")
                                   for h in ("select", "cond")]
  assert all(r[-3] == "x1.00" for r in rows if r[1] == chosen)
