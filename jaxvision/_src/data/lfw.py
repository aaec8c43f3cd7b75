"""A reader for LFW's ``pairs.txt`` (Huang et al. 2007), so real LFW plugs in with a path."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from jaxvision._src.export import export


@export("data.LFWPairs")
class LFWPairs(NamedTuple):
    """The pairs of an LFW-style protocol file.

    Attributes:
      first: ``N`` image paths (or ``name/name_0001.jpg`` relative paths).
      second: ``N`` image paths of the other image of each pair.
      same: ``[N]`` bool, True for a matched (same identity) pair.
      folds: ``[N]`` int, the fold of each pair (the file's order, contiguous).
    """

    first: list[str]
    second: list[str]
    same: np.ndarray
    folds: np.ndarray


def _image(root: str, name: str, number: str, ext: str) -> str:
    return os.path.join(root, name, f"{name}_{int(number):04d}{ext}")


@export("data.read_lfw_pairs")
def read_lfw_pairs(path: str | os.PathLike, *, image_root: str = "", ext: str = ".jpg") -> LFWPairs:
    """Reads an LFW ``pairs.txt`` (or ``pairsDevTrain.txt`` / ``pairsDevTest.txt``).

    Format: a header ``"<folds>\\t<n>"`` (``pairs.txt``: 10 folds of 300 matched then 300
    mismatched pairs) or ``"<n>"`` (the View 1 files: one fold of ``n`` matched then
    ``n`` mismatched), then one pair a line: ``name i j`` for two images of ``name``,
    ``name1 i name2 j`` for two people; fields separated by tabs or spaces. Image ``i`` of
    ``name`` is ``<image_root>/name/name_<i:04d><ext>``, LFW's layout.

    Args:
      path: the pairs file.
      image_root: directory prepended to every image path (``""``: relative paths).
      ext: image file extension.

    Returns:
      ``LFWPairs`` in file order; ``metrics.lfw_protocol`` with ``num_folds`` equal to the
      header's fold count then uses the file's folds.

    Raises:
      ValueError: the header or a line is malformed or the line count disagrees with the
        header (the message names the line).
    """
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty pairs file")
    header = lines[0]
    try:
        folds, per_fold = (1, int(header[0])) if len(header) == 1 else map(int, header)
    except ValueError:
        raise ValueError(
            f"{path}:1: header must be '<folds> <pairs per fold>', got {header}"
        ) from None
    body = lines[1:]
    if len(body) != 2 * folds * per_fold:
        raise ValueError(
            f"{path}: header says {folds} folds x 2 x {per_fold} pairs = "
            f"{2 * folds * per_fold} lines, found {len(body)}"
        )
    first, second, same = [], [], []
    for number, fields in enumerate(body, start=2):
        if len(fields) == 3:
            first.append(_image(image_root, fields[0], fields[1], ext))
            second.append(_image(image_root, fields[0], fields[2], ext))
            same.append(True)
        elif len(fields) == 4:
            first.append(_image(image_root, fields[0], fields[1], ext))
            second.append(_image(image_root, fields[2], fields[3], ext))
            same.append(False)
        else:
            raise ValueError(f"{path}:{number}: expected 3 or 4 fields, got {fields}")
    return LFWPairs(
        first=first,
        second=second,
        same=np.asarray(same, bool),
        folds=np.repeat(np.arange(folds), 2 * per_fold),
    )
