"""Several scores at once, and a per-class table for research scripts."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.metrics import scores

NAN = float("nan")

_PER_CLASS: dict[str, Callable[..., jax.Array]] = {
    "class_iou": scores.class_iou,
    "class_accuracy": scores.class_accuracy,
    "class_dice": scores.class_dice,
    "class_precision": scores.class_precision,
}
_MEANS: dict[str, Callable[..., jax.Array]] = {
    "mean_iou": scores.mean_iou,
    "mean_accuracy": scores.mean_accuracy,
    "mean_dice": scores.mean_dice,
}
_NO_ABSENT: dict[str, Callable[..., jax.Array]] = {
    "pixel_accuracy": scores.pixel_accuracy,
    "frequency_weighted_iou": scores.frequency_weighted_iou,
}
SCORE_NAMES: tuple[str, ...] = (*_NO_ABSENT, *_MEANS, *_PER_CLASS)
# Score names before the class_<score> / mean_<score> renames; still accepted with a warning.
_OLD_NAMES = {
    "mean_pixel_accuracy": "mean_accuracy",
    "dice": "class_dice",
    "precision": "class_precision",
    "recall": "class_accuracy",
}


def _check_collision(name: str, num_classes: int, ignore_index: int | None) -> None:
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index={ignore_index} is also class {ignore_index} of num_classes="
            f"{num_classes}, which {name} uses: its target pixels were dropped while its "
            "predictions still count as false positives. Use an ignore_index outside "
            "[0, num_classes) (e.g. 255, with reduce_zero_label for a background 0)."
        )


@export("metrics.segmentation_scores")
def segmentation_scores(
    cm: ArrayLike,
    names: Sequence[str] | None = None,
    *,
    absent: float = NAN,
    ignore_index: int | None = None,
) -> dict[str, jax.Array]:
    """Several scores of one confusion matrix, by name.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix (int counts, host int64
        included, or float).
      names: scores to compute, from ``pixel_accuracy``, ``frequency_weighted_iou``,
        ``mean_iou``, ``mean_accuracy``, ``mean_dice``, ``class_iou``,
        ``class_accuracy``, ``class_dice``, ``class_precision``; ``None`` for all. The
        old names ``mean_pixel_accuracy``, ``dice``, ``precision`` and ``recall`` still
        work (under their old keys) with a ``DeprecationWarning``.
      absent: the absent-class policy of the scores that take one (NaN: undefined and
        excluded from means).
      ignore_index: the ``ignore_index`` the matrix was built with. One that names a class
        in ``[0, C)`` makes every score wrong for that class and raises.

    Returns:
      ``{name: score}``; per-class scores are ``[..., C]``, the others ``[...]``.

    Raises:
      ValueError: unknown name, or ``ignore_index`` inside ``[0, C)``.

    Examples:
      >>> segmentation_scores(jnp.array([[3, 1], [0, 4]]), ["mean_iou", "class_iou"])
      {'mean_iou': Array(0.775, dtype=float32), 'class_iou': Array([0.75, 0.8 ], dtype=float32)}
    """
    cm = scores.as_float_counts(cm)
    names = SCORE_NAMES if names is None else tuple(names)
    out = {}
    for key in names:
        name = _OLD_NAMES.get(key, key)
        if name != key:
            warnings.warn(
                f"score name {key!r} is deprecated; use {name!r}", DeprecationWarning, stacklevel=2
            )
        if name not in SCORE_NAMES:
            raise ValueError(f"unknown score {key!r}; known: {list(SCORE_NAMES)}")
        _check_collision(name, cm.shape[-2], ignore_index)
        if name in _NO_ABSENT:
            out[key] = _NO_ABSENT[name](cm)
        else:
            out[key] = {**_MEANS, **_PER_CLASS}[name](cm, absent=absent)
    return out


def _fmt(value: float, digits: int) -> str:
    return "nan" if np.isnan(value) else f"{100.0 * value:.{digits}f}"


@export("metrics.segmentation_report")
def segmentation_report(
    cm: ArrayLike,
    class_names: Sequence[str] | None = None,
    *,
    absent: float = NAN,
    ignore_index: int | None = None,
    digits: int = 2,
) -> str:
    """A per-class table (IoU, accuracy, Dice, precision, pixel counts) and the means.

    Scores are printed in percent; ``nan`` marks an absent class (excluded from means).

    Args:
      cm: ``[C, C + 1]`` or ``[C, C]`` confusion matrix of the whole dataset.
      class_names: ``C`` names; defaults to the class indices.
      absent: absent-class policy, as in ``segmentation_scores``.
      ignore_index: as in ``segmentation_scores``.
      digits: decimals of the percentages.

    Returns:
      The table as a string, ready to print.

    Examples:
      >>> print(segmentation_report(jnp.array([[3, 1], [0, 4]]), ["road", "sidewalk"]))
      class       IoU     Acc   Dice    Prec  GT pixels  pred pixels
      --------  -----  ------  -----  ------  ---------  -----------
      road      75.00   75.00  85.71  100.00          4            3
      sidewalk  80.00  100.00  88.89   80.00          4            5
      <BLANKLINE>
      aAcc 87.50  mAcc 87.50  mIoU 77.50  fwIoU 77.50  mDice 87.30
    """
    cm = np.asarray(jax.device_get(cm))
    if cm.ndim != 2:
        raise ValueError(f"cm must be one [C, C + 1] or [C, C] matrix, got shape {cm.shape}")
    res = {
        k: np.asarray(v, np.float64)
        for k, v in segmentation_scores(cm, absent=absent, ignore_index=ignore_index).items()
    }
    c = cm.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names for {c} classes")
    counts = cm.astype(np.int64) if cm.dtype.kind in "iu" else cm
    gt = counts.sum(1)
    predicted = counts[:, :c].sum(0)
    header = ["class", "IoU", "Acc", "Dice", "Prec", "GT pixels", "pred pixels"]
    rows = [
        [
            names[i],
            _fmt(res["class_iou"][i], digits),
            _fmt(res["class_accuracy"][i], digits),
            _fmt(res["class_dice"][i], digits),
            _fmt(res["class_precision"][i], digits),
            f"{gt[i]:,.0f}",
            f"{predicted[i]:,.0f}",
        ]
        for i in range(c)
    ]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out.append("")
    out.append(
        f"aAcc {_fmt(res['pixel_accuracy'], digits)}  "
        f"mAcc {_fmt(res['mean_accuracy'], digits)}  "
        f"mIoU {_fmt(res['mean_iou'], digits)}  "
        f"fwIoU {_fmt(res['frequency_weighted_iou'], digits)}  "
        f"mDice {_fmt(res['mean_dice'], digits)}"
    )
    return "\n".join(out)
