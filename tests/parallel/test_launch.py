"""The launcher: 2 processes x 4 devices equal 1 process x 8; a dead process stops the run."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxvision import parallel

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _launch(script, *args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)  # each process gets its devices from --local-devices
    cmd = [sys.executable, "-m", "jaxvision.launch", "--nproc", "2", "--local-devices", "4"]
    cmd += ["--grace", "2", "--timeout", str(timeout - 20), str(HERE / script), *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
    # Loader batches, the step and a checkpoint round trip, across two processes.
    assert jax.device_count() == 8
    out = tmp_path / "out.npz"
    run = _launch("dp_script.py", out, tmp_path / "ckpt")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "process 1: 8 devices" in run.stdout
    params, losses = _load(HERE / "dp_script.py").train()
    got = np.load(out)
    np.testing.assert_allclose(got["losses"], losses, rtol=1e-5)
    for name, value in params.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_a_dead_process_stops_the_others_with_a_message():
    start = time.monotonic()
    run = _launch("fail_script.py", timeout=180)
    elapsed = time.monotonic() - start
    assert run.returncode == 3, run.stderr[-3000:]
    assert "process 1" in run.stderr and "exited with code 3" in run.stderr
    assert "process 0: second sum" not in run.stdout
    assert elapsed < 120


def test_initialize_is_a_no_op_in_a_plain_process():
    parallel.initialize()
    assert jax.process_count() == 1
    with pytest.raises(ValueError, match="coordinator_address"):
        parallel.initialize(num_processes=2, process_id=1)
