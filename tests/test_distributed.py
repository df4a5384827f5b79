"""Multi-process start-up decisions (jaxgen/distributed.py) without starting
any process; tests/test_multihost.py runs real ones."""

import os
import signal

import pytest

from jaxgen import distributed
from jaxgen import main as main_lib

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
        "SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS",
        "TPU_WORKER_HOSTNAMES")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
  for name in _ENV:
    monkeypatch.delenv(name, raising=False)


def test_one_process_is_a_no_op():
  assert not distributed.initialize()
  assert not distributed.initialize("127.0.0.1:1234", 1, 0)


@pytest.mark.parametrize("kwargs,missing", [
    (dict(coordinator_address="127.0.0.1:1234"),
     "number of processes, process id"),
    (dict(num_processes=2, process_id=0), "coordinator address"),
])
def test_incomplete_arguments_are_one_error(kwargs, missing):
  with pytest.raises(ValueError, match=f"missing: {missing}"):
    distributed.initialize(**kwargs)


def test_environment_counts_as_arguments(monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  with pytest.raises(ValueError, match="coordinator address, process id"):
    distributed.initialize()
  monkeypatch.setenv("JAX_PROCESS_ID", "two")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID='two' is not an "):
    distributed.initialize()


def test_process_id_out_of_range():
  with pytest.raises(ValueError, match=r"--process_id=2 must be in \[0, 2\)"):
    distributed.initialize("127.0.0.1:1234", 2, 2)


@pytest.mark.parametrize("env,want", [
    ({}, False),
    ({"SLURM_NTASKS": "4"}, False),  # sbatch's shell, not an srun step.
    ({"SLURM_STEP_ID": "0", "SLURM_NTASKS": "1"}, False),
    ({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8"}, True),
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2"}, False),  # A single-host slice.
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}, True),
])
def test_cluster_detection(env, want, monkeypatch):
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert distributed.cluster_detected() == want


def test_sigterm_with_one_process_is_a_flag_for_the_loop():
  previous = signal.getsignal(signal.SIGTERM)
  with distributed.Preemption() as preemption:
    assert not preemption.requested(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.requested(2)
  assert signal.getsignal(signal.SIGTERM) is previous


def test_main_reports_bad_process_flags_without_a_traceback(tmp_path, capsys):
  code = main_lib.main(["--config=configs/vae.py:tiny",
                        f"--workdir={tmp_path}/run", "--num_processes=2"])
  assert code == 1
  err = capsys.readouterr().err
  assert "missing: coordinator address, process id" in err
  assert "Traceback" not in err
  assert not os.path.exists(tmp_path / "run")
