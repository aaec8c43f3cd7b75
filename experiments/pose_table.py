"""The paper-style table: every head at two map (or input) resolutions, trained the same way.

    python experiments/pose_table.py --root runs/pose_table [--steps 200]

Each row is one ``experiments/train_pose.py`` run on the generated figures (the same data,
steps, batch and learning rate); the heatmap run is decoded with argmax and with DARK,
the integral head is trained with and without the background debias, and without the
DSNT regulariser. Rows already done
under ``--root`` are read back, so an interrupted table resumes. Prints a Markdown table;
the last line is JSON with every row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_pose  # noqa: E402

# Every row: no flip (the generated figures colour their left and right limbs, so a
# mirrored crop is one the validation set never shows) and AdamW 5e-3 (BENCHMARKS.md, "Pose:
# the integral model"). The integral rows add the DSNT regulariser (weight 1) but the
# "L1 only" one. (row name, train_pose overrides); deconv_layers=1 is the stride-8 map.
COMMON = ["flip=false", "lr=5e-3"]
REG = "integral_heatmap_weight=1.0"
ROWS: tuple[tuple[str, list[str]], ...] = (
    ("integral s4", ["head=integral", REG]),
    ("heatmap s4", ["head=heatmap"]),
    ("simcc s4", ["head=simcc"]),
    ("rle 64x48", ["head=rle"]),
    ("integral+debias s4", ["head=integral", REG, "integral_debias=true"]),
    ("integral s8", ["head=integral", REG, "deconv_layers=1"]),
    ("heatmap s8", ["head=heatmap", "deconv_layers=1"]),
    ("simcc s8", ["head=simcc", "deconv_layers=1"]),
    ("rle 48x32", ["head=rle", "input_h=48", "input_w=32"]),
    ("integral L1 only s4", ["head=integral", "integral_heatmap_weight=0"]),
)


def run_row(root: Path, name: str, sets: list[str], common: list[str]) -> dict:
    workdir = root / name.replace(" ", "_").replace("+", "_")
    done = workdir / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    args = ["--workdir", str(workdir)]
    for s in common + sets:
        args += ["--set", s]
    summary = train_pose.main(args)
    done.write_text(json.dumps(summary))
    return summary


def cpu_ms(s: dict) -> float:
    """CPU milliseconds per step (the wall time is inflated by the other jobs' load)."""
    return 1e3 * s["step_cpu_s"] / max(1, s["steps"] - 1)


def table(rows: list[tuple[str, dict]]) -> str:
    out = [
        "| model | decode | input / map | OKS AP | AP50 | PCK@0.05 | error px | params "
        "| step ms wall (CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in rows:
        decodes = [("argmax", "none_"), ("DARK", "dark_")] if "heatmap" in name else [("", "")]
        for label, tag in decodes:
            dec = (
                label
                or {"integral": "soft-argmax", "simcc": "argmax / k", "rle": "regression"}[
                    s["head"]
                ]
            )
            if "debias" in name:
                dec += " + debias"
            if s["head"] == "integral":
                dec += " (L1)" if "L1 only" in name else " (L1 + DSNT)"
            out.append(
                f"| {name} | {dec} | {s['input']} / {s['map']} | {s[tag + 'AP']:.3f} | "
                f"{s[tag + 'AP50']:.3f} | {s[tag + 'PCK@0.05']:.3f} | {s[tag + 'error_px']:.2f} "
                f"| {s['params'] / 1e6:.2f} M | {s['step_ms']:.0f} ({cpu_ms(s):.0f}) |"
            )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--data-dir", default="")
    p.add_argument("--only", nargs="*", default=None, help="row names to run")
    p.add_argument("--report", action="store_true", help="print the rows done, train none")
    args = p.parse_args()
    root = Path(args.root)
    common = COMMON + [f"steps={args.steps}", f"data_dir={args.data_dir or root / 'data'}"]
    rows = []
    for name, sets in ROWS:
        done = (root / name.replace(" ", "_").replace("+", "_") / "summary.json").exists()
        if (args.only is None or name in args.only) and (done or not args.report):
            rows.append((name, run_row(root, name, sets, common)))
    print(table(rows))
    print(json.dumps({n: s for n, s in rows}))


if __name__ == "__main__":
    main()
