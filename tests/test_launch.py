"""Tests of the launch scripts in launch/, with stub python, gcloud and srun.

No script here starts a real training run: a stub `python` first on PATH
records the command line it was given (and the environment variables the
scripts set), so the tests check what each script would run.
"""

import glob
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from jaxgen import configlib
from tests import clis

ROOT = clis.ROOT
LAUNCH = os.path.join(ROOT, "launch")


SCRIPTS = sorted(glob.glob(os.path.join(LAUNCH, "*.sh")) +
                 glob.glob(os.path.join(LAUNCH, "*.sbatch")))
# Checked for syntax and by shellcheck: the launch scripts and CI's entry.
CHECKED = SCRIPTS + [os.path.join(ROOT, ".ci", "run")]
CONFIG = "configs/vae.py:demo"
OVERRIDE = "--config.train.num_steps=3"

# Records argv, a few environment variables and its pid under
# $STUB_RECORD, named by --process_id (or "single"). STUB_MODE=fail1 makes
# process 1 fail after a moment and every other process wait a minute;
# STUB_MODE=wait makes every process wait a minute.
_STUB_PYTHON = r"""#!/usr/bin/env bash
id=single
for a in "$@"; do
  case "$a" in --process_id=*) id=${a#*=} ;; esac
done
printf '%s\n' "$@" > "$STUB_RECORD/argv.$id"
{
  echo "JAX_LOCAL_DEVICE_IDS=${JAX_LOCAL_DEVICE_IDS:-}"
  echo "JAX_CPU_COLLECTIVES_IMPLEMENTATION=${JAX_CPU_COLLECTIVES_IMPLEMENTATION:-}"
  echo "PWD=$PWD"
} > "$STUB_RECORD/env.$id"
echo $$ > "$STUB_RECORD/pid.$id"
case "${STUB_MODE:-ok}:$id" in
  fail1:1) sleep 0.5; exit 1 ;;
  fail1:*|wait:*) exec sleep 60 ;;
esac
exit 0
"""

# Appends each call's argv (one line: newlines in an argument become spaces,
# fields are separated by \x1f) to
# $STUB_RECORD/gcloud.calls; `describe` prints $STUB_TPU_STATE or fails
# (no such VM) when it is empty; `scp` copies the archive it is given; `ssh`
# exits with $STUB_SSH_STATUS (default 0).
_STUB_GCLOUD = r"""#!/usr/bin/env bash
line=""
for a in "$@"; do line+="${a//$'\n'/ }"$'\x1f'; done
printf '%s\n' "$line" >> "$STUB_RECORD/gcloud.calls"
case "$4" in
  describe)
    [ -n "${STUB_TPU_STATE:-}" ] || exit 1
    echo "$STUB_TPU_STATE" ;;
  scp) cp "$5" "$STUB_RECORD/archive.tar.gz" ;;
  ssh) exit "${STUB_SSH_STATUS:-0}" ;;
esac
exit 0
"""

# Records its options, then runs the task command (everything after them)
# once, as one SLURM task would.
_STUB_SRUN = r"""#!/usr/bin/env bash
opts=()
while [ $# -gt 0 ]; do
  case "$1" in -*) opts+=("$1"); shift ;; *) break ;; esac
done
printf '%s\n' "${opts[@]}" > "$STUB_RECORD/srun.opts"
exec "$@"
"""


def _write_stub(folder: str, name: str, text: str) -> None:
  path = os.path.join(folder, name)
  with open(path, "w") as f:
    f.write(text)
  os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP |
           stat.S_IXOTH)


@pytest.fixture(name="stubs")
def _stubs(tmp_path):
  """A folder of stub commands and a record folder; returns (env, record)."""
  bin_dir = tmp_path / "bin"
  record = tmp_path / "record"
  bin_dir.mkdir()
  record.mkdir()
  _write_stub(str(bin_dir), "python", _STUB_PYTHON)
  _write_stub(str(bin_dir), "gcloud", _STUB_GCLOUD)
  _write_stub(str(bin_dir), "srun", _STUB_SRUN)
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "TPU_", "JAX_", "CUDA_VISIBLE"))
         and k != "PYTHON"}
  env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
  env["STUB_RECORD"] = str(record)
  return env, record


def _run(args, env, timeout=60):
  return subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _lines(path) -> list[str]:
  with open(path) as f:
    return f.read().splitlines()


def _recorded_env(record, name) -> dict:
  return dict(line.split("=", 1) for line in _lines(record / f"env.{name}"))


def _assert_stopped(pid_file) -> None:
  pid = int(_lines(pid_file)[0])
  with pytest.raises(ProcessLookupError):
    os.kill(pid, 0)


def test_scripts_found():
  names = {os.path.basename(p) for p in SCRIPTS}
  assert {"local.sh", "tpu_vm.sh", "slurm.sbatch"} <= names


@pytest.mark.parametrize("script", CHECKED, ids=os.path.basename)
def test_bash_syntax(script):
  result = subprocess.run(["bash", "-n", script], capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", CHECKED, ids=os.path.basename)
def test_shellcheck(script):
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (Debian package `shellcheck`; "
                ".ci/run installs it when it can)")
  result = subprocess.run(["shellcheck", "--shell=bash", script],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (["launch/local.sh"], "CONFIG and WORKDIR are required"),
    (["launch/local.sh", CONFIG], "CONFIG and WORKDIR are required"),
    (["launch/local.sh", "--processes", "0", CONFIG, "runs/x"],
     "--processes must be a positive integer"),
    (["launch/local.sh", "--processes"], "--processes needs a value"),
    (["launch/local.sh", "--bogus", CONFIG, "runs/x"], "unknown option"),
    (["launch/tpu_vm.sh"], "CONFIG and WORKDIR are required"),
    (["launch/tpu_vm.sh", CONFIG, "runs/x"], "must be a gs:// path"),
    (["launch/tpu_vm.sh", "--zone", "x", CONFIG, "gs://b/x"],
     "unknown option"),
    (["bash", "launch/slurm.sbatch"], "CONFIG and WORKDIR are required"),
    (["bash", "launch/slurm.sbatch", CONFIG, "runs/x"],
     "not inside a SLURM job"),
])
def test_usage_errors(stubs, args, message):
  env, record = stubs
  result = _run(args, env)
  assert result.returncode == 2, result.stderr
  assert message in result.stderr
  assert "usage:" in result.stderr
  # Nothing was started.
  assert not os.listdir(record)


def test_help_exits_zero(stubs):
  env, _ = stubs
  for script in ("launch/local.sh", "launch/tpu_vm.sh"):
    result = _run([script, "--help"], env)
    assert result.returncode == 0
    assert "usage:" in result.stderr


def test_local_one_process(stubs, tmp_path):
  env, record = stubs
  workdir = str(tmp_path / "run")
  result = _run(["launch/local.sh", CONFIG, workdir, OVERRIDE], env)
  assert result.returncode == 0, result.stderr
  assert _lines(record / "argv.single") == [
      "-m", "jaxgen.main", f"--config={CONFIG}", f"--workdir={workdir}",
      OVERRIDE]


def test_local_two_processes(stubs, tmp_path):
  env, record = stubs
  workdir = str(tmp_path / "run")
  result = _run(["launch/local.sh", "--processes", "2", "--port=23456",
                 CONFIG, workdir, OVERRIDE], env)
  assert result.returncode == 0, result.stderr
  for i in (0, 1):
    assert _lines(record / f"argv.{i}") == [
        "-m", "jaxgen.main", f"--config={CONFIG}", f"--workdir={workdir}",
        "--coordinator_address=127.0.0.1:23456", "--num_processes=2",
        f"--process_id={i}", OVERRIDE]
    assert _recorded_env(record, i)[
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo"
  assert not os.path.exists(record / "argv.2")
  assert os.path.exists(os.path.join(workdir, "process_logs",
                                     "process_1.log"))


def test_local_failing_process_stops_the_others(stubs, tmp_path):
  env, record = stubs
  env["STUB_MODE"] = "fail1"
  start = time.monotonic()
  result = _run(["launch/local.sh", "--processes", "3", CONFIG,
                 str(tmp_path / "run")], env, timeout=50)
  elapsed = time.monotonic() - start
  assert result.returncode == 1, result.stderr
  assert "process 1 exited with status 1" in result.stderr
  assert elapsed < 30  # the others (sleeping a minute) were stopped
  for i in (0, 2):
    _assert_stopped(record / f"pid.{i}")


_DEFAULT_SIGINT_EXEC = ("import os, signal, sys; "
                        "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.argv[1], sys.argv[1:])")


def test_local_interrupt_stops_all_processes(stubs, tmp_path):
  env, record = stubs
  env["STUB_MODE"] = "wait"
  # As from a terminal: SIGINT not ignored (a test runner may ignore it).
  # A small exec wrapper restores it, rather than Popen's preexec_fn, which
  # forks this multithreaded (JAX) process (a RuntimeWarning, and a deadlock
  # risk in the child).
  proc = subprocess.Popen(
      [sys.executable, "-c", _DEFAULT_SIGINT_EXEC, "launch/local.sh",
       "--processes", "2", CONFIG, str(tmp_path / "run")],
      cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 30
    while not all(os.path.exists(record / f"pid.{i}") for i in (0, 1)):
      assert time.monotonic() < deadline, "the processes did not start"
      time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
  finally:
    proc.kill()
    stderr = proc.communicate()[1]
  assert "interrupted, stopping all processes" in stderr
  for i in (0, 1):
    _assert_stopped(record / f"pid.{i}")


def _gcloud_calls(record) -> list[list[str]]:
  return [line.split("\x1f")[:-1]
          for line in _lines(record / "gcloud.calls")]


def test_tpu_vm_creates_copies_installs_and_runs(stubs):
  env, record = stubs
  workdir = "gs://bucket/runs/vae"
  result = _run(["launch/tpu_vm.sh", "--name=t1", "--zone=europe-west4-a",
                 "--accelerator=v5litepod-16", "--version=v2-alpha-tpuv5-lite",
                 CONFIG, workdir, OVERRIDE], env)
  assert result.returncode == 0, result.stderr
  calls = _gcloud_calls(record)
  assert [c[:5] for c in calls] == [
      ["compute", "tpus", "tpu-vm", "describe", "t1"],
      ["compute", "tpus", "tpu-vm", "create", "t1"],
      ["compute", "tpus", "tpu-vm", "scp", calls[2][4]],
      ["compute", "tpus", "tpu-vm", "ssh", "t1"],
      ["compute", "tpus", "tpu-vm", "ssh", "t1"],
      ["compute", "tpus", "tpu-vm", "ssh", "t1"],
  ]
  assert "--zone=europe-west4-a" in calls[1]
  assert "--accelerator-type=v5litepod-16" in calls[1]
  assert "--version=v2-alpha-tpuv5-lite" in calls[1]
  assert "--worker=all" in calls[2]
  for call in calls[3:]:
    assert "--worker=all" in call
  commands = [next(a for a in c if a.startswith("--command="))
              for c in calls[3:]]
  assert "tar -xzf jaxgen.tar.gz" in commands[0]
  assert "pip install -q -e '.[tpu]'" in commands[1]
  assert commands[2] == (
      f"--command=cd jaxgen && python3 -m jaxgen.main --config={CONFIG} "
      f"--workdir={workdir} {OVERRIDE} ")
  # The copied checkout holds the package and the launch scripts.
  listing = subprocess.run(["tar", "-tzf", str(record / "archive.tar.gz")],
                           capture_output=True, text=True, check=True).stdout
  assert "setup.cfg" in listing.split()
  assert "launch/tpu_vm.sh" in listing.split()


def test_tpu_vm_reuses_a_ready_vm(stubs):
  env, record = stubs
  env["STUB_TPU_STATE"] = "READY"
  result = _run(["launch/tpu_vm.sh", "--skip_setup", CONFIG, "gs://b/run"],
                env)
  assert result.returncode == 0, result.stderr
  calls = _gcloud_calls(record)
  assert [c[3] for c in calls] == ["describe", "ssh"]
  assert "reusing TPU VM jaxgen" in result.stderr


@pytest.mark.parametrize("run_status", [0, 3])
def test_tpu_vm_delete_after_the_run(stubs, run_status):
  env, record = stubs
  env.update(STUB_TPU_STATE="READY", STUB_SSH_STATUS=str(run_status))
  result = _run(["launch/tpu_vm.sh", "--skip_setup", "--delete",
                 "--project=p1", CONFIG, "gs://b/run"], env)
  assert result.returncode == run_status, result.stderr
  calls = _gcloud_calls(record)
  assert [c[3] for c in calls] == ["describe", "ssh", "delete"]
  assert calls[2][4:] == ["jaxgen", "--zone=us-central2-b", "--project=p1",
                          "--quiet"]


def test_tpu_vm_refuses_a_stopped_vm(stubs):
  env, record = stubs
  env["STUB_TPU_STATE"] = "STOPPED"
  result = _run(["launch/tpu_vm.sh", CONFIG, "gs://b/run"], env)
  assert result.returncode == 1
  assert "is STOPPED, not READY" in result.stderr
  assert [c[3] for c in _gcloud_calls(record)] == ["describe"]


@pytest.mark.parametrize("slurm_env, device_ids", [
    # SLURM bound two GPUs to the task: CUDA numbers them 0 and 1.
    ({"CUDA_VISIBLE_DEVICES": "4,5", "SLURM_GPUS_PER_TASK": "2",
      "SLURM_LOCALID": "2"}, "0,1"),
    # Not bound: the task sees all 8 and takes the one of its local rank.
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "SLURM_GPUS_PER_TASK": "1",
      "SLURM_LOCALID": "3"}, "3"),
    # One task per node (--gres=gpu:4 --ntasks-per-node=1): all four.
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_NTASKS_PER_NODE": "1",
      "SLURM_LOCALID": "0"}, "0,1,2,3"),
    # Nothing to go by: JAX's own detection decides.
    ({"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_LOCALID": "1"}, ""),
])
def test_slurm_runs_main_on_each_task(stubs, tmp_path, slurm_env, device_ids):
  env, record = stubs
  env.update(slurm_env, SLURM_JOB_ID="42", SLURM_SUBMIT_DIR=ROOT)
  workdir = str(tmp_path / "run")
  # sbatch runs a copy of the script from elsewhere, with the submit dir set.
  copy = tmp_path / "slurm_script"
  shutil.copy(os.path.join(LAUNCH, "slurm.sbatch"), copy)
  result = subprocess.run(["bash", str(copy), CONFIG, workdir, OVERRIDE],
                          cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert "--kill-on-bad-exit=1" in _lines(record / "srun.opts")
  assert _lines(record / "argv.single") == [
      "-m", "jaxgen.main", f"--config={CONFIG}", f"--workdir={workdir}",
      OVERRIDE]
  recorded = _recorded_env(record, "single")
  assert recorded["JAX_LOCAL_DEVICE_IDS"] == device_ids
  assert recorded["PWD"] == ROOT


def test_slurm_keeps_given_local_device_ids(stubs, tmp_path):
  env, record = stubs
  env.update(SLURM_JOB_ID="42", SLURM_SUBMIT_DIR=ROOT,
             CUDA_VISIBLE_DEVICES="0,1", SLURM_GPUS_PER_TASK="2",
             JAX_LOCAL_DEVICE_IDS="1")
  result = _run(["bash", "launch/slurm.sbatch", CONFIG, str(tmp_path / "r")],
                env)
  assert result.returncode == 0, result.stderr
  assert _recorded_env(record, "single")["JAX_LOCAL_DEVICE_IDS"] == "1"


def test_stability_study_commands():
  """launch/stability.py: the classifier first, then every recipe x seed,
  each with its seed and the study's overrides; --dry_run trains nothing."""
  stability = clis.launch_module("stability")
  study = stability.STUDIES["label_cgan"]
  runs = stability.commands(study, "/out", [0, 1], steps=5)
  names = [os.path.basename(w) for w, _ in runs]
  assert names == ["classifier", "check_classifier", "aux_classifier",
                   "concat_s0", "concat_s1", "projection_s0", "projection_s1",
                   "projection_swap_s0", "projection_swap_s1",
                   "projection_swap_aug_s0", "projection_swap_aug_s1",
                   "projection_swap_init_s0", "projection_swap_init_s1",
                   "projection_swap_init5_s0", "projection_swap_init5_s1",
                   "projection_swap_init5_slow_s0",
                   "projection_swap_init5_slow_s1"]
  _, cmd = runs[5]
  assert "--config.model.label_injection=projection" in cmd
  assert not any("label_swap" in a for a in cmd)
  assert "--config.gan.label_swap=0.5" in runs[7][1]
  assert {"--config.gan.aux_classifier=5.0", stability.DIFFAUG} <= set(
      runs[9][1])
  # The check classifier: another architecture and seed; the auxiliary
  # classifier another seed, and the study's folder in the recipe that
  # starts from it.
  assert {"--config.model.width=16", "--config.seed=2"} <= set(runs[1][1])
  assert "--config.seed=1" in runs[2][1]
  assert ("--config.gan.aux_classifier_init=/out/aux_classifier"
          in runs[11][1])
  assert {"--config.aux_optim.lr=1e-4", "--config.gan.aux_classifier=5.0"
          } <= set(runs[15][1])
  assert "--config.seed=0" in cmd and "--config.train.num_steps=5" in cmd
  assert cmd[1:3] == ["-m", "jaxgen.main"]
  assert all(any(a.startswith("--config.data.root=") for a in c)
             for _, c in runs)
  runs = stability.commands(study, "/out", [1], recipes=["projection"])
  assert [os.path.basename(w) for w, _ in runs] == [
      "classifier", "check_classifier", "projection_s1"]
  for name in stability.STUDIES:
    assert stability.main(["--study", name, "--dry_run", "--out",
                           "/nonexistent"]) == 0
  assert stability.main(["--study", "pix2pix", "--recipes", "projection",
                         "--dry_run"]) == 2


def test_stability_truncation_only_for_gan_studies(capsys):
  """--truncation: bounds for the studies whose runs draw latent codes; a
  translation study or a bad bound is one usage error before any run."""
  stability = clis.launch_module("stability")
  assert stability.truncations("siamese", ["0.7", "0.5"]) == [0.7, 0.5]
  assert stability.truncations("signatures", []) == []
  assert stability.main(["--study", "siamese", "--truncation", "0.7",
                         "--dry_run", "--out", "/nonexistent"]) == 0
  capsys.readouterr()
  assert stability.main(["--study", "pix2pix", "--truncation", "0.7",
                         "--dry_run"]) == 2
  assert "not to the pix2pix study's runs ('cgan')" in capsys.readouterr().err
  for bad in ("-1", "x"):
    assert stability.main(["--study", "siamese", "--truncation", bad,
                           "--dry_run"]) == 2
    assert "--truncation" in capsys.readouterr().err


def test_stability_summary_folder_per_selection():
  """A study's selection of recipes or seeds is summarised in its own folder
  (scoring one new recipe kept overwriting the summary of all the others)."""
  folder = clis.launch_module("stability").compare_folder
  assert folder([], [0, 1]) == "compare"
  assert folder(["diffaug", "ema"], [0, 1]) == "compare-diffaug+ema-s0+1"
  assert folder([], [0]) == "compare-all-s0"
  assert folder(["ema"], [1, 2]) != folder(["ema"], [1])
  assert folder(["ema"], [0], "compare_check") == "compare_check-ema-s0"
  assert folder([], [0, 1], "compare_check") == "compare_check"


def test_stability_overrides_name_config_fields():
  """Every run of every study overrides only fields its config has (a typo
  in a recipe fails here, not after the runs before it have trained)."""
  stability = clis.launch_module("stability")
  for name, study in stability.STUDIES.items():
    for workdir, cmd in stability.commands(study, "/out", [0]):
      config = configlib.load_config_file(cmd[3][len("--config="):])
      assert configlib.unknown_override(config, cmd[5:]) is None, (
          name, workdir)
