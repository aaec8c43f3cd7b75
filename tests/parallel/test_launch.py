"""The launcher: 2 processes x 4 devices equal 1 process x 8; a dead process stops the run."""

import importlib.util
import os
import re
import signal
import socket
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


# How each way of failing is reported: (launcher exit code, text in its stderr).
FAILURES = {
    "os_exit": (3, "process 1 (pid {pid}) exited with code 3"),
    "sys_exit": (3, "process 1 (pid {pid}) exited with code 3"),
    "raise": (1, "process 1 (pid {pid}) exited with code 1"),
    "sigkill": (137, "process 1 (pid {pid}) was killed by SIGKILL"),
}


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_the_first_process_to_fail_is_reported_within_seconds(mode, tmp_path):
    # Before the fix, raise and sys.exit hung in JAX's shutdown barrier for 30-300 s and
    # the launcher then blamed process 0. Timed from process 1's failure (right after it
    # prints its first sum) to the launcher's exit, so start-up under load does not count.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "jaxvision.launch", "--nproc", "2", "--local-devices", "4"]
    cmd += ["--grace", "2", "--timeout", "90", str(HERE / "fail_script.py"), mode]
    with open(tmp_path / "stderr", "w+") as err:
        run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        stdout, failed_at = [], None
        for line in run.stdout:
            stdout.append(line)
            # Both processes write to one pipe: a line may hold the other's text first.
            if "process 1: first sum" in line:
                failed_at = time.monotonic()
        run.wait(timeout=120)
        ended_at = time.monotonic()
        err.seek(0)
        stderr = err.read()
    assert failed_at is not None, f"process 1 never printed its first sum: {stdout}{stderr[-3000:]}"
    reported_in = ended_at - failed_at
    code, text = FAILURES[mode]
    assert run.returncode == code, stderr[-3000:]
    message = [line for line in stderr.splitlines() if line.startswith("jaxvision.launch")]
    assert len(message) == 1 and re.search(
        text.format(pid=r"\d+").replace("(", r"\(").replace(")", r"\)"), message[0]
    ), stderr[-3000:]
    assert not any("process 0: second sum" in line for line in stdout)
    if mode == "raise":
        assert "RuntimeError: process 1 fails on purpose" in stderr
    assert reported_in < 15, reported_in


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_workers_die_with_a_killed_launcher():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "jaxvision.launch", "--nproc", "2", "--local-devices", "1"]
    launcher = subprocess.Popen(
        [*cmd, str(HERE / "fail_script.py"), "wait"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        # Both workers write to one pipe, and with PYTHONUNBUFFERED a print's text and its
        # newline are two writes: a line may hold both pids, or none.
        pids, seen = [], []
        while len(pids) < 2:
            line = launcher.stdout.readline()
            assert line, f"the launcher ended before both workers printed their pid: {seen}"
            seen.append(line)
            pids += [int(pid) for pid in re.findall(r"pid (\d+)", line)]
        assert all(_alive(pid) for pid in pids)
        launcher.kill()
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        launcher.kill()
        for pid in pids if "pids" in locals() else ():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_taken_coordinator_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("XLA_FLAGS", None)
        cmd = [sys.executable, "-m", "jaxvision.launch", "--nproc", "2", "--local-devices", "1"]
        cmd += ["--coordinator", f"127.0.0.1:{port}", "--timeout", "60"]
        run = subprocess.run(
            [*cmd, str(HERE / "fail_script.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert run.returncode != 0
    assert "process 0" in run.stderr and f"port {port} is in use" in run.stderr, run.stderr[-3000:]


def test_initialize_is_a_no_op_in_a_plain_process():
    parallel.initialize()
    assert jax.process_count() == 1
    with pytest.raises(ValueError, match="coordinator_address"):
        parallel.initialize(num_processes=2, process_id=1)
