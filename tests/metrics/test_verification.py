"""Verification metrics against insightface's procedure written with scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.metrics import verification

sklearn_metrics = pytest.importorskip("sklearn.metrics")
model_selection = pytest.importorskip("sklearn.model_selection")


def _insightface_roc(thresholds, dist, issame, nrof_folds=10):
    """insightface eval/verification.py calculate_roc, with sklearn's KFold."""
    k_fold = model_selection.KFold(n_splits=nrof_folds, shuffle=False)
    accuracy, best = np.zeros(nrof_folds), np.zeros(nrof_folds)
    tprs = np.zeros((nrof_folds, len(thresholds)))
    fprs = np.zeros((nrof_folds, len(thresholds)))

    def acc(threshold, d, same):
        pred = np.less(d, threshold)
        tp = np.sum(pred & same)
        fp = np.sum(pred & ~same)
        tn = np.sum(~pred & ~same)
        fn = np.sum(~pred & same)
        tpr = 0 if tp + fn == 0 else tp / (tp + fn)
        fpr = 0 if fp + tn == 0 else fp / (fp + tn)
        return tpr, fpr, (tp + tn) / d.size

    for f, (train, test) in enumerate(k_fold.split(np.arange(len(dist)))):
        acc_train = np.array([acc(t, dist[train], issame[train])[2] for t in thresholds])
        i = np.argmax(acc_train)
        for j, t in enumerate(thresholds):
            tprs[f, j], fprs[f, j], _ = acc(t, dist[test], issame[test])
        accuracy[f] = acc(thresholds[i], dist[test], issame[test])[2]
        best[f] = thresholds[i]
    return accuracy, best, tprs.mean(0), fprs.mean(0)


@pytest.mark.parametrize("n", [600, 437])
def test_lfw_protocol_equals_insightface_reference(n):
    rng = np.random.default_rng(n)
    same = rng.random(n) < 0.5
    dist = np.where(same, rng.normal(0.9, 0.35, n), rng.normal(1.6, 0.35, n)).clip(0, 4)
    thresholds = np.arange(0, 4, 0.01)
    want_acc, want_thr, want_tpr, want_fpr = _insightface_roc(thresholds, dist, same)
    with jax.enable_x64(True):
        got = jax.jit(verification.lfw_protocol)(dist, same)
    np.testing.assert_allclose(np.asarray(got.accuracy), want_acc, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got.thresholds), want_thr, rtol=1e-12)
    np.testing.assert_allclose(float(got.mean_accuracy), want_acc.mean(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got.tar), want_tpr, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(got.far), want_fpr, rtol=1e-6, atol=1e-7)
    # Similarities (higher = same) with the mirrored thresholds give the same folds.
    sim = verification.lfw_protocol(
        -dist, same, thresholds=-thresholds, distance=False
    )
    np.testing.assert_allclose(np.asarray(sim.accuracy), want_acc, rtol=1e-6)


def test_tar_at_far_and_roc_equal_sklearn():
    rng = np.random.default_rng(0)
    n = 3000
    same = rng.random(n) < 0.3
    scores = np.where(same, rng.normal(0.6, 0.2, n), rng.normal(0.1, 0.2, n))
    scores[:200] = np.round(scores[:200], 1)  # ties
    fpr, tpr, _ = sklearn_metrics.roc_curve(same, scores)
    for far in [0.0, 1e-3, 1e-2, 0.1, 1.0]:
        want = tpr[fpr <= far].max()
        got = verification.tar_at_far(scores.astype(np.float32), same, far=far)
        np.testing.assert_allclose(float(got), want, rtol=1e-6)
        dist = verification.tar_at_far(-scores.astype(np.float32), same, far=far, distance=True)
        np.testing.assert_allclose(float(dist), want, rtol=1e-6)
    thresholds = np.linspace(-0.5, 1.0, 31)
    tar, far = verification.verification_roc(scores, same, thresholds)
    np.testing.assert_allclose(np.asarray(tar), [(scores[same] > t).mean() for t in thresholds],
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(far), [(scores[~same] > t).mean() for t in thresholds],
                               rtol=1e-6)


def test_degenerate_and_errors():
    assert float(verification.tar_at_far(jnp.zeros(4), jnp.zeros(4, bool))) == 0.0
    tar, far = verification.verification_roc(jnp.zeros(3), jnp.ones(3, bool), jnp.array([-1.0]))
    assert float(tar[0]) == 1.0 and float(far[0]) == 0.0
    with pytest.raises(ValueError, match="`scores` and `same` must both be"):
        verification.tar_at_far(jnp.zeros(4), jnp.zeros(3, bool))
    with pytest.raises(ValueError, match="`far`"):
        verification.tar_at_far(jnp.zeros(4), jnp.zeros(4, bool), far=2.0)
    with pytest.raises(ValueError, match="`num_folds`"):
        verification.lfw_protocol(jnp.zeros(4), jnp.zeros(4, bool), num_folds=10)
