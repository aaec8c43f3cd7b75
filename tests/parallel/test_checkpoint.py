"""Checkpoints: SIGKILL and resume equals the straight run; keep-last-N; corruption."""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import parallel

HERE = Path(__file__).parent
K = 4


def _script():
    spec = importlib.util.spec_from_file_location("resume_script", HERE / "resume_script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigkill_during_a_save_then_resume_equals_the_straight_run(tmp_path):
    script = _script()
    straight = script.train(tmp_path / "straight", K)

    run_dir = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    cmd = [sys.executable, str(HERE / "resume_script.py"), str(run_dir), str(K), str(K // 2 + 1)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # The interrupted save left a temporary directory; the latest complete step is K/2.
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(f"{K // 2 + 1}.")]
    assert leftovers, sorted(p.name for p in run_dir.iterdir())
    with parallel.CheckpointManager(run_dir) as ckpt:
        assert ckpt.latest_step() == K // 2

    resumed = script.train(run_dir, K)  # K/2 more steps after the restore
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name])


def _state(value):
    opt = optax.adam(1e-3)
    return parallel.TrainState.create({"w": jnp.full((3, 4), value)}, opt)


def test_keep_last_n_and_a_corrupted_latest_checkpoint(tmp_path):
    ckpt = parallel.CheckpointManager(tmp_path, max_to_keep=2)
    for s in (1, 2, 3):
        assert ckpt.save(s, _state(float(s)), rng=jax.random.key(s), data_state={"batches": s})
    assert ckpt.all_steps() == [2, 3]

    restored = ckpt.restore(_state(0.0), rng=jax.random.key(0))
    assert restored.step == 3 and restored.data_state == {"batches": 3}
    np.testing.assert_array_equal(restored.state.params["w"], np.full((3, 4), 3.0))
    np.testing.assert_array_equal(
        jax.random.key_data(restored.rng), jax.random.key_data(jax.random.key(3))
    )

    for root, _, files in os.walk(tmp_path / "3" / "state"):
        for f in files:
            if "METADATA" not in f and "commit" not in f:
                Path(root, f).write_bytes(b"\x00garbage")
    with pytest.raises(parallel.CheckpointError, match=r"step 3 at .*/3 is unreadable"):
        parallel.CheckpointManager(tmp_path).restore(_state(0.0), rng=jax.random.key(0))
    previous = parallel.CheckpointManager(tmp_path).restore(
        _state(0.0), rng=jax.random.key(0), step=2
    )
    np.testing.assert_array_equal(previous.state.params["w"], np.full((3, 4), 2.0))
    assert int(previous.state.step) == 0 and previous.data_state == {"batches": 2}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep"):
        parallel.CheckpointManager(tmp_path, max_to_keep=0)
    ckpt = parallel.CheckpointManager(tmp_path)
    with pytest.raises(parallel.CheckpointError, match="no checkpoint"):
        ckpt.restore(_state(0.0))
    with pytest.raises(ValueError, match="step"):
        ckpt.save(-1, _state(0.0))
