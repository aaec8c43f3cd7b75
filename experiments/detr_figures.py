"""Figures of a DETR run: the loss / AP curves and a grid of predictions against truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def plot_curves(
    loss_steps: Sequence[int],
    losses: Sequence[float],
    eval_steps: Sequence[int],
    metrics: Sequence[dict[str, float]],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Training loss (left axis, log scale) and COCO AP / AP50 / AP75 (right axis) by step."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(loss_steps, losses, color="0.5", lw=1, label="train loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    for key, colour in (("AP", "C0"), ("AP50", "C1"), ("AP75", "C2")):
        ax2.plot(eval_steps, [m[key] for m in metrics], "o-", color=colour, label=key)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("COCO AP (held-out split)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax2.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def draw_predictions(
    images: np.ndarray,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    true_boxes: np.ndarray,
    true_labels: np.ndarray,
    true_mask: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    score_threshold: float = 0.5,
    columns: int = 4,
) -> Path:
    """A grid of images with ground truth (dashed white) and predictions (coloured, scored).

    Args:
      images: ``[N, H, W, 3]`` uint8.
      pred_boxes: ``[N, Q, 4]`` ``xyxy`` pixels; ``pred_scores``, ``pred_labels``: ``[N, Q]``.
      true_boxes: ``[N, T, 4]`` ``xyxy`` pixels; ``true_labels``, ``true_mask``: ``[N, T]``.
      class_names: names of the contiguous labels.
      path: the PNG to write.
      score_threshold: predictions scoring below it are not drawn.
      columns: images per row.
    """
    n = len(images)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows), dpi=120)
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], interpolation="nearest")
        for (x0, y0, x1, y1), m in zip(true_boxes[i], true_mask[i], strict=True):
            if m:
                ax.add_patch(
                    Rectangle(
                        (x0 - 0.5, y0 - 0.5),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        ec="white",
                        ls="--",
                        lw=1.2,
                    )
                )
        for (x0, y0, x1, y1), s, lab in zip(
            pred_boxes[i], pred_scores[i], pred_labels[i], strict=True
        ):
            if s < score_threshold:
                continue
            colour = _COLOURS[int(lab) % len(_COLOURS)]
            ax.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5)
            )
            ax.text(
                x0,
                y0 - 1,
                f"{class_names[int(lab)]} {s:.2f}",
                color="white",
                fontsize=6,
                bbox={"facecolor": colour, "pad": 0.5, "lw": 0},
            )
    fig.suptitle("predictions (coloured) vs ground truth (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def draw_first_batch(
    first: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    score_threshold: float = 0.5,
) -> Path:
    """Up to 16 images of an evaluation batch: predictions against ground truth.

    Args:
      first: ``(batch, predictions)`` as ``train.evaluate_detection`` returns them; the
        batch's boxes are ``cxcywh`` normalised, the predictions ``xyxy`` pixels.
      class_names: the trained classes (names of the predicted labels).
      path: the PNG to write.
      score_threshold: predictions scoring below it are not drawn.
    """
    true, pred = first
    k = min(16, int(true["valid"].sum()))
    cxcy, wh = true["boxes"][:k, :, :2], true["boxes"][:k, :, 2:]
    scale = np.tile(true["sizes"][:k, None, ::-1], (1, 1, 2)).astype(np.float32)
    true_xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], -1) * scale
    return draw_predictions(
        true["images"][:k],
        pred["boxes"][:k],
        pred["scores"][:k],
        pred["labels"][:k],
        true_xyxy,
        true["labels"][:k],
        true["mask"][:k],
        class_names,
        path,
        score_threshold=score_threshold,
    )
