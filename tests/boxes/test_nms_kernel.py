"""The CUDA path of nms (suppression bitmask + one scan kernel), in the Pallas interpreter.

On CUDA GPUs ``boxes.nms`` and ``boxes.batched_nms`` use ``nms_kernel.greedy_bitmask``;
here its result is checked against the float64 sequential greedy reference on the CPU,
and its lowering to Triton is checked without a GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes
from jaxvision._src.boxes import nms, nms_kernel, terms
from tests.boxes import np_reference as ref


def bitmask_nms(b, s, threshold, labels=None, max_output=None):
    """``boxes.nms`` with the bitmask path run in the Pallas interpreter."""
    n = b.shape[0]
    max_output = n if max_output is None else max_output
    order = nms._score_order(jnp.asarray(s))
    c = terms.corners(jnp.asarray(b)[order], "xyxy")
    rows = jnp.stack([c.x1, c.y1, c.x2, c.y2, c.area], axis=-1)
    sorted_labels = None if labels is None else jnp.asarray(labels)[order]
    positions, count = nms_kernel.greedy_bitmask(
        rows, sorted_labels, jnp.float32(threshold), max_output, interpret=True
    )
    count = int(count)
    return np.asarray(order)[np.asarray(positions)[:count]].tolist()


@pytest.mark.parametrize("n", [1, 31, 32, 33, 300])
def test_random_problems_match_sequential_greedy(n):
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 120, (n, 2))
    b = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], -1).astype(np.float32)
    s = rng.uniform(size=n).astype(np.float32)
    labels = rng.integers(0, 3, n)
    for threshold in (0.3, 0.65):
        expected = ref.greedy_nms(b.astype(np.float64), s, threshold)
        assert bitmask_nms(b, s, threshold) == expected
        expected = ref.greedy_nms(b.astype(np.float64), s, threshold, labels)
        assert bitmask_nms(b, s, threshold, labels) == expected


def test_ties_nan_boxes_and_max_output():
    rng = np.random.default_rng(7)
    n = 200
    xy = rng.uniform(0, 60, (n, 2))
    b = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], -1).astype(np.float32)
    b[::17] = np.nan  # never suppress, never suppressed
    s = rng.integers(0, 5, n).astype(np.float32)  # many equal scores: lower index first
    got = bitmask_nms(b, s, 0.5)
    want, _ = boxes.nms(b, s, 0.5)  # the CPU path
    assert got == np.asarray(want)[: len(got)].tolist() and -1 not in got
    assert bitmask_nms(b, s, 0.5, max_output=5) == got[:5]


def test_lowers_to_triton_for_cuda():
    # Lowering (jaxpr -> Triton IR) needs no GPU; compiling to PTX happens on one.
    rng = np.random.default_rng(8)
    b = jnp.asarray(rng.uniform(0, 100, (1000, 4)), jnp.float32)
    b = jnp.concatenate([b[:, :2], b[:, :2] + 10], 1)
    s = jnp.asarray(rng.uniform(size=1000), jnp.float32)
    lowered = (
        jax.jit(boxes.nms, static_argnames="max_output")
        .trace(b, s, 0.5)
        .lower(lowering_platforms=("cuda",))
    )
    assert "jaxvision_nms_scan" in lowered.as_text()


def test_vmap_over_images():
    # Per-image NMS of a batch, as detection post-processing does: one program per image.
    rng = np.random.default_rng(9)
    n = 70
    xy = rng.uniform(0, 100, (3, n, 2))
    b = np.concatenate([xy, xy + rng.uniform(5, 40, (3, n, 2))], -1).astype(np.float32)
    s = rng.uniform(size=(3, n)).astype(np.float32)

    def one(bb, ss):
        order = nms._score_order(ss)
        c = terms.corners(bb[order], "xyxy")
        rows = jnp.stack([c.x1, c.y1, c.x2, c.y2, c.area], axis=-1)
        positions, count = nms_kernel.greedy_bitmask(
            rows, None, jnp.float32(0.5), n, interpret=True
        )
        return order[positions], count

    indices, counts = jax.device_get(jax.jit(jax.vmap(one))(jnp.asarray(b), jnp.asarray(s)))
    for k in range(3):
        expected = ref.greedy_nms(b[k].astype(np.float64), s[k], 0.5)
        assert indices[k][: counts[k]].tolist() == expected
