"""OKS against pycocotools' computeOks; PCK, PCKh and EPE against hand values and NumPy."""

from collections import defaultdict

import numpy as np
import pytest

from jaxvision._src.keypoints.constants import COCO_SIGMAS
from jaxvision._src.metrics.keypoints import (
    keypoint_epe,
    keypoint_oks,
    keypoint_pck,
    keypoint_pckh,
)


def _pycocotools_oks(pred, gt, areas, boxes, sigmas):
    """``COCOeval.computeOks`` for one image: ``pred [N, K, 2]``, ``gt [M, K, 3]``."""
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(iouType="keypoints")
    ev.params.kpt_oks_sigmas = np.asarray(sigmas)
    ev.params.maxDets = [len(pred)]
    ev._gts, ev._dts = defaultdict(list), defaultdict(list)
    for g, a, b in zip(gt, areas, boxes, strict=True):
        ev._gts[1, 1].append(
            {"keypoints": g.reshape(-1).tolist(), "area": float(a), "bbox": b.tolist()}
        )
    for i, p in enumerate(pred):  # decreasing scores keep pycocotools' sort in our order
        kp = np.concatenate([p, np.ones((len(p), 1))], -1)
        ev._dts[1, 1].append({"keypoints": kp.reshape(-1).tolist(), "score": 1.0 - i / 1000})
    return np.asarray(ev.computeOks(1, 1))


def _random_case(rng, n, m, k):
    gt_xy = rng.uniform(0, 200, (m, k, 2))
    vis = rng.choice([0, 1, 2], size=(m, k), p=[0.3, 0.2, 0.5])
    vis[0] = 0  # one ground truth with no labelled keypoint
    gt = np.concatenate([gt_xy, vis[..., None]], -1)
    boxes = np.concatenate([rng.uniform(0, 150, (m, 2)), rng.uniform(5, 60, (m, 2))], -1)
    areas = rng.uniform(50, 5000, m)
    areas[-1] = 0.0  # pycocotools' eps keeps a zero area finite
    pred = gt_xy[rng.integers(0, m, n)] + rng.normal(0, 8, (n, k, 2))
    pred[0] = rng.uniform(-100, 300, (k, 2))  # far from everything
    return pred, gt, areas, boxes


@pytest.mark.parametrize("k", [17, 5])
def test_keypoint_oks_equals_pycocotools(k):
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(k)
    sigmas = COCO_SIGMAS if k == 17 else rng.uniform(0.02, 0.1, k)
    pred, gt, areas, boxes = _random_case(rng, 7, 6, k)
    want = _pycocotools_oks(pred, gt, areas, boxes, sigmas)
    got = keypoint_oks(pred, gt, areas, gt_boxes=boxes, sigmas=None if k == 17 else sigmas)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert np.any(want[:, 0] > 0)  # the unlabelled ground truth's box rule is exercised


def test_keypoint_oks_batched_equals_per_image_pycocotools():
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(7)
    cases = [_random_case(rng, 4, 3, 17) for _ in range(6)]
    stack = [np.stack(c).reshape(2, 3, *c[0].shape) for c in zip(*cases, strict=True)]
    got = np.asarray(keypoint_oks(stack[0], stack[1], stack[2], gt_boxes=stack[3]))
    assert got.shape == (2, 3, 4, 3)
    for i, c in enumerate(cases):
        np.testing.assert_allclose(
            got.reshape(6, 4, 3)[i], _pycocotools_oks(*c, COCO_SIGMAS), rtol=2e-5, atol=1e-6
        )


def test_keypoint_oks_anchor_values():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (1, 17, 2))
    gt = np.concatenate([xy, np.full((1, 17, 1), 2.0)], -1)
    pred = xy.copy()
    pred[0, 0, 0] += 10.0
    np.testing.assert_allclose(keypoint_oks(pred, gt, [10000.0])[0, 0], 0.950434, rtol=1e-6)
    gt[0, 15:, 2] = 0
    np.testing.assert_allclose(keypoint_oks(pred, gt, [10000.0])[0, 0], 0.943825, rtol=1e-6)


def test_keypoint_oks_without_boxes_scores_unlabelled_ground_truths_zero():
    gt = np.zeros((1, 17, 3))
    assert float(keypoint_oks(np.zeros((2, 17, 2)), gt, [100.0]).max()) == 0.0


def test_keypoint_oks_bad_input_is_named():
    with pytest.raises(ValueError, match="sigmas"):
        keypoint_oks(np.zeros((2, 5, 2)), np.zeros((1, 5, 3)), np.ones(1))
    with pytest.raises(ValueError, match="gt_keypoints"):
        keypoint_oks(np.zeros((2, 17, 2)), np.zeros((1, 17, 2)), np.ones(1))
    with pytest.raises(ValueError, match="K"):
        keypoint_oks(np.zeros((2, 16, 2)), np.zeros((1, 17, 3)), np.ones(1))
    with pytest.raises(ValueError, match="gt_areas"):
        keypoint_oks(np.zeros((2, 17, 2)), np.zeros((1, 17, 3)), np.ones(2))
    with pytest.raises(ValueError, match="gt_boxes"):
        keypoint_oks(np.zeros((2, 17, 2)), np.zeros((1, 17, 3)), np.ones(1), gt_boxes=np.ones(4))


def test_pckh_anchor_is_strict():
    head = np.array([[0.0, 0.0, 6.0, 8.0]])  # diagonal 10 -> head size 6
    gt = np.zeros((1, 1, 2))
    assert float(keypoint_pckh(np.array([[[3.0, 0.0]]]), gt, None, head)) == 0.0
    assert float(keypoint_pckh(np.array([[[2.99, 0.0]]]), gt, None, head)) == 1.0


def test_pck_and_epe_match_numpy():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 100, (8, 17, 2))
    pred = gt + rng.normal(0, 4, gt.shape)
    vis = rng.integers(0, 3, (8, 17))
    norm = rng.uniform(50, 150, 8)
    d = np.linalg.norm(pred - gt, axis=-1)
    ok = vis > 0
    np.testing.assert_allclose(
        keypoint_pck(pred, gt, vis, norm, threshold=0.05),
        np.mean((d / norm[:, None] < 0.05)[ok]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(keypoint_epe(pred, gt, vis), d[ok].mean(), rtol=1e-5)
    # No visible keypoint and a zero normaliser are finite.
    assert float(keypoint_pck(pred, gt, np.zeros((8, 17)), norm)) == 0.0
    assert float(keypoint_pck(pred, gt, vis, np.zeros(8))) == 0.0
    assert float(keypoint_epe(pred, gt, np.zeros((8, 17)))) == 0.0
    with pytest.raises(ValueError, match="normalizer"):
        keypoint_pck(pred, gt, vis, np.ones(3))
