"""The grain pipeline: epochs, determinism, resumption, worker processes, mesh sharding."""

import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxvision import data, parallel

N = 40


class Squares:
    """Record i: an image-like array filled with i, and i itself."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"image": np.full((4, 4, 3), i, np.float32), "index": np.int32(i)}


def jitter(record, rng):
    """A random flip and noise, plus the pid of the process that ran it."""
    image = record["image"][:, ::-1] if rng.random() < 0.5 else record["image"]
    image = image + rng.normal(size=image.shape).astype(np.float32)
    return {**record, "image": image, "pid": np.int32(os.getpid())}


def _take(loader, k):
    return [jax.tree.map(np.asarray, next(loader)) for _ in range(k)]


def test_each_epoch_is_a_permutation_and_the_seed_fixes_it():
    loader = data.Loader(Squares(), global_batch_size=8, seed=3, num_epochs=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 2 * N // 8
    epochs = np.concatenate([b["index"] for b in batches]).reshape(2, N)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(N))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(N))
    again = list(data.Loader(Squares(), global_batch_size=8, seed=3, num_epochs=2))
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in again]), epochs.ravel())
    other = list(data.Loader(Squares(), global_batch_size=8, seed=4, num_epochs=2))
    assert not np.array_equal(np.concatenate([b["index"] for b in other]), epochs.ravel())
    ordered = data.Loader(Squares(), global_batch_size=8, shuffle=False, num_epochs=1)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in ordered]), np.arange(N))


def test_resuming_from_the_state_continues_exactly():
    straight = _take(data.Loader(Squares(), global_batch_size=8, transform=jitter, seed=1), 9)
    first = data.Loader(Squares(), global_batch_size=8, transform=jitter, seed=1)
    head = _take(first, 4)
    state = first.get_state()
    assert state["batches"] == 4
    resumed = data.Loader(Squares(), global_batch_size=8, transform=jitter, seed=1)
    resumed.set_state(state)
    tail = _take(resumed, 5)
    for a, b in zip(straight, head + tail, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["index"], b["index"])
    with pytest.raises(ValueError, match="seed"):
        data.Loader(Squares(), global_batch_size=8, seed=2).set_state(state)


def test_worker_processes_give_the_same_batches_onto_the_mesh():
    mesh = parallel.make_mesh(8)
    here = _take(data.Loader(Squares(), global_batch_size=16, transform=jitter, seed=5), 4)
    with data.Loader(
        Squares(), global_batch_size=16, transform=jitter, seed=5, mesh=mesh, worker_count=2
    ) as loader:
        first = next(loader)
        assert first["image"].sharding.spec == P("data")
        assert first["image"].shape == (16, 4, 4, 3)
        workers = [jax.tree.map(np.asarray, first)] + _take(loader, 3)
    pids = {int(p) for b in workers for p in b["pid"]}
    assert os.getpid() not in pids and len(pids) == 2  # two worker processes did the work
    for a, b in zip(here, workers, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["index"], b["index"])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="global_batch_size"):
        data.Loader(Squares(), global_batch_size=0)
    with pytest.raises(ValueError, match="worker_count"):
        data.Loader(Squares(), global_batch_size=8, worker_count=-1)
    with pytest.raises(TypeError, match="source"):
        data.Loader(3, global_batch_size=8)
    with pytest.raises(ValueError, match="divisible"):
        data.Loader(Squares(), global_batch_size=12, mesh=parallel.make_mesh(8))


def test_a_state_of_another_batch_size_and_an_empty_stream_are_refused():
    # Before: a position of 4 batches of 8 was taken as 4 batches of 16 (other records),
    # and a stream shorter than one batch built a loader of zero batches silently.
    first = data.Loader(Squares(), global_batch_size=8, seed=1)
    _take(first, 4)
    state = first.get_state()
    assert state["global_batch_size"] == 8
    with pytest.raises(ValueError, match="global_batch_size 8.*16"):
        data.Loader(Squares(), global_batch_size=16, seed=1).set_state(state)
    data.Loader(Squares(), global_batch_size=8, seed=1).set_state(state)
    with pytest.raises(ValueError, match="no batch"):
        data.Loader(Squares(), global_batch_size=N + 1, num_epochs=1)
