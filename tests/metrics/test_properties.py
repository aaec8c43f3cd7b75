"""Property tests: counts against NumPy, and merging in any order or split."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxvision import metrics

from .reference import fcn_scores, reference_counts

C = 6
N = 96  # fixed length: one compile serves every example

labels = hnp.arrays(np.int32, (N,), elements=st.integers(-2, C + 1))
confusion = jax.jit(lambda t, p: metrics.confusion_from_labels(p, t, C, ignore_index=C))
update = jax.jit(metrics.ConfusionState.update)
merge = jax.jit(metrics.ConfusionState.merge)


@settings(max_examples=30, deadline=None)
@given(labels, labels)
def test_counts_and_scores_match_numpy(t, p):
    cm = np.asarray(confusion(jnp.asarray(t), jnp.asarray(p)))
    n, gt = reference_counts(t, p, C, ignore_index=C)
    np.testing.assert_array_equal(cm[:, :C], n)
    np.testing.assert_array_equal(cm.sum(1), gt)
    want = fcn_scores(n, gt)
    got = metrics.segmentation_scores(cm)
    for name in ["pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"]:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-6, err_msg=name)


@settings(max_examples=20, deadline=None)
@given(labels, labels, st.integers(0, N), st.integers(0, N))
def test_merge_of_any_split_equals_one_pass(t, p, i, j):
    i, j = sorted((i, j))
    empty = metrics.ConfusionState.init(C, ignore_index=C)
    whole = update(empty, t, p).counts()
    # Pad the pieces to length N with ignored targets: same compile, same counts.
    pieces = []
    for lo, hi in [(0, i), (i, j), (j, N)]:
        tt = np.full(N, C, np.int32)
        pp = np.zeros(N, np.int32)
        tt[: hi - lo], pp[: hi - lo] = t[lo:hi], p[lo:hi]
        pieces.append(update(empty, tt, pp))
    a, b, c = pieces
    np.testing.assert_array_equal(merge(merge(a, b), c).counts(), whole)
    np.testing.assert_array_equal(merge(c, merge(b, a)).counts(), whole)
