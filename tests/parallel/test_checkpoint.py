"""Checkpoints: SIGKILL and resume equals the straight run; keep-last-N; damage; locks."""

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
    with pytest.raises(parallel.CheckpointError, match=r"step 3 at .*/3 is damaged: unreadable"):
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


def _random_state(seed):
    w = jax.random.normal(jax.random.key(seed), (64, 64))
    return parallel.TrainState.create({"w": w}, optax.adam(1e-3))


def _flip_bytes_in_largest_array_file(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "METADATA" not in p.name]
    big = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(big.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 4] = bytes(b ^ 0xFF for b in raw[middle : middle + 4])
    big.write_bytes(bytes(raw))


def test_flipped_bytes_inside_an_array_file_are_detected_and_skipped(tmp_path, capfd):
    # Before the checksums, these bytes restored without error as other (finite) weights.
    with parallel.CheckpointManager(tmp_path, max_to_keep=3) as ckpt:
        for s in (1, 2):
            ckpt.save(s, _random_state(s), rng=jax.random.key(s), data_state={"batches": s})
    _flip_bytes_in_largest_array_file(tmp_path / "2")
    ckpt = parallel.CheckpointManager(tmp_path)
    with pytest.raises(parallel.CheckpointError, match=r"step 2 at .*/2 is damaged: .*params"):
        ckpt.restore(_random_state(0), rng=jax.random.key(0))
    lines = []
    restored = ckpt.restore(
        _random_state(0), rng=jax.random.key(0), fallback=True, log=lines.append
    )
    assert restored.step == 1 and restored.data_state == {"batches": 1}
    np.testing.assert_array_equal(restored.state.params["w"], _random_state(1).params["w"])
    assert len(lines) == 1 and "step 2" in lines[0] and "falling back to step 1" in lines[0]
    assert restored.skipped == tuple(lines)
    ckpt.close()


def test_unreadable_step_is_one_error_without_asyncio_noise(tmp_path, capfd):
    with parallel.CheckpointManager(tmp_path, max_to_keep=3) as ckpt:
        for s in (1, 2):
            ckpt.save(s, _state(float(s)))
    for p in (tmp_path / "2" / "state").rglob("*"):
        if p.is_file() and "METADATA" not in p.name:
            p.write_bytes(b"\x00garbage")
    with parallel.CheckpointManager(tmp_path) as ckpt:
        with pytest.raises(parallel.CheckpointError, match=r"step 2 .* damaged: unreadable file"):
            ckpt.restore(_state(0.0))
        assert ckpt.restore(_state(0.0), fallback=True).step == 1
        with pytest.raises(parallel.CheckpointError, match="step 2"):
            ckpt.restore(_state(0.0), step=2, fallback=True)  # an explicit step never falls back
    err = capfd.readouterr().err
    assert "never retrieved" not in err and "Event loop is closed" not in err, err[-2000:]


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_read_only_creates_nothing(tmp_path):
    with pytest.raises(parallel.CheckpointError, match="no checkpoint directory"):
        parallel.CheckpointManager(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
    with parallel.CheckpointManager(tmp_path / "run") as ckpt:
        ckpt.save(1, _state(1.0))
    before = _listing(tmp_path)
    with parallel.CheckpointManager(tmp_path / "run", read_only=True) as ckpt:
        assert ckpt.restore(_state(0.0)).step == 1
        with pytest.raises(parallel.CheckpointError, match="read-only"):
            ckpt.save(2, _state(2.0))
    assert _listing(tmp_path) == before


def test_a_locked_workdir_names_its_holder_and_a_killed_holder_frees_it(tmp_path):
    code = (
        "import sys, time; from jaxvision._src.parallel.checkpoint import WorkdirLock; "
        "lock = WorkdirLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)"
    )
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(parallel.WorkdirLockError, match=rf"pid {holder.pid} on host \S+"):
            parallel.WorkdirLock(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with parallel.WorkdirLock(tmp_path):  # the kernel dropped the dead holder's lock
        with pytest.raises(parallel.WorkdirLockError, match=f"pid {os.getpid()}"):
            parallel.WorkdirLock(tmp_path)
