"""Compares the loss curves of two train_face runs (one device vs the sharded classifier).

    python experiments/face_curves.py runs/face/pfc1 runs/face/pfc8 curves.png
"""

import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(workdir: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in open(Path(workdir) / "metrics.jsonl")]
    return np.array([r["step"] for r in rows]), np.array([r["loss"] for r in rows])


def main(one: str, many: str, out: str) -> None:
    (s1, l1), (s8, l8) = curve(one), curve(many)
    assert (s1 == s8).all(), "the runs logged different steps"
    rel = np.abs(l1 - l8) / np.abs(l1)
    for s, a, b, r in zip(s1, l1, l8, rel, strict=True):
        print(f"step {s:4d}  1 device {a:.5f}  sharded {b:.5f}  relative difference {r:.1e}")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(s1, l1, "-", label="1 device")
    ax.plot(s8, l8, "--", label="8 devices, centres sharded")
    ax.set_xlabel("step")
    ax.set_ylabel("ArcFace loss")
    ax.legend(fontsize=8)
    ax.set_title("Partial FC: one device vs 8 simulated devices", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main(*sys.argv[1:4])
