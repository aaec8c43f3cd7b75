"""Each data-losing failure of the old DETR scripts, run on the old code and on this one.

The scenarios are those of issue 11 ("Training runs that lose nothing"), tried as a
user would, from the command line, on the ``smoke`` preset: the same commands run
against a git worktree of the code before the training harness (``--old-rev``, default
the commit before it was merged) and against this checkout. A scenario counts as
*reproduced* when the old code shows the failure and as *fixed* when this code does
not; the script prints one table row per scenario and exits 1 unless every scenario is
both. It needs git and this repository's history::

    python experiments/reproduce_harness_failures.py            # ~30 short runs
    python experiments/reproduce_harness_failures.py --only nan,fresh

The tests that keep each fix are ``tests/experiments/test_train_detr_smoke.py`` and
``tests/train``; this script is the "before the fix" half, which a test of the current
code cannot show.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_REV = "1abf3cb"  # main when issue 11 was filed, before any of its fixes


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Tree:
    """One code base to run the scripts from, with its own compilation cache."""

    root: Path
    cache: Path

    def run(self, script: str, *args: str, wait: bool = True) -> Result | subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "JAX_PLATFORMS": "cpu",
            "JAX_COMPILATION_CACHE_DIR": str(self.cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
        cmd = [sys.executable, str(self.root / "experiments" / script), *args]
        proc = subprocess.Popen(
            cmd, cwd=self.root, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        if not wait:
            return proc
        out, err = proc.communicate(timeout=900)
        return Result(proc.returncode, out, err)


def _train(tree: Tree, workdir: Path, *extra: str) -> Result:
    return tree.run("train_detr.py", "--preset", "smoke", "--workdir", str(workdir), *extra)


_BASES: dict[Path, Path] = {}


def _base_run(tree: Tree, tmp: Path, *extra: str) -> Path:
    """A finished smoke run of ``tree`` (trained once per tree and options), copied to
    ``tmp/w`` for a scenario to damage."""
    key = tree.cache.parent / f"base-{tree.cache.name}-{'-'.join(extra) or 'plain'}"
    if key not in _BASES:
        res = _train(tree, key, *extra)
        if res.rc != 0:
            raise RuntimeError(f"the base run failed ({tree.root}): {_last_error(res)}")
        _BASES[key] = key
    shutil.copytree(key, tmp / "w")
    return tmp / "w"


def _summary(res: Result) -> dict:
    lines = [x for x in res.out.strip().splitlines() if x.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _last_error(res: Result) -> str:
    lines = [x for x in res.err.strip().splitlines() if x.strip()]
    return lines[-1][:160] if lines else ""


def _flip_array_bytes(step_dir: Path) -> None:
    """Inverts 4 bytes in the middle of every OCDBT data file (the arrays' chunks)."""
    for path in step_dir.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            raw = bytearray(path.read_bytes())
            mid = len(raw) // 2
            raw[mid : mid + 4] = bytes(b ^ 0xFF for b in raw[mid : mid + 4])
            path.write_bytes(bytes(raw))


def _listing(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


# --------------------------------------------------------------------------- scenarios
# Each takes (tree, scratch folder) and returns (failed: bool, what happened: str), where
# "failed" means the data-losing behaviour of the issue was observed.


def bad_set_type(tree: Tree, tmp: Path) -> tuple[bool, str]:
    res = _train(tree, tmp / "w", "--set", "steps=abc", "--set", "eval_every=1000")
    named = "steps" in res.err and "int" in res.err and res.rc != 0 and "Traceback" not in res.err
    return not named, f"exit {res.rc}: {_last_error(res)}"


def bad_set_string(tree: Tree, tmp: Path) -> tuple[bool, str]:
    res = _train(tree, tmp / "w", "--set", "name=test", "--steps", "2")
    return res.rc != 0, f"exit {res.rc}: {_last_error(res) or 'trained'}"


def flipped_bytes(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    _flip_array_bytes(w / "checkpoints" / "4")
    again = _train(tree, w)
    said = "damaged" in again.out + again.err and "falling back" in again.out + again.err
    return not said, (
        f"after flipping bytes in step 4: exit {again.rc}, "
        f"{'names the damage and falls back to step 2' if said else 'no fallback'}"
        f"{': ' + _last_error(again)[:100] if again.rc else ''}"
    )


def fresh_deletes(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    before = {p.name: p.stat().st_mtime_ns for p in (w / "checkpoints").iterdir()}
    config = (w / "config.json").read_text()
    res = _train(tree, w, "--fresh", "--seed", "1")
    after = {p.name: p.stat().st_mtime_ns for p in (w / "checkpoints").iterdir()}
    lost = after != before or (w / "config.json").read_text() != config
    return lost, f"exit {res.rc}; old run's checkpoints/config {'replaced' if lost else 'kept'}"


def config_change(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    config = (w / "config.json").read_text()
    res = _train(tree, w, "--set", "lr=5e-4")
    rewritten = (w / "config.json").read_text() != config
    silent = res.rc == 0
    return silent or rewritten, (
        f"exit {res.rc}, config.json {'rewritten' if rewritten else 'kept'}: "
        f"{_last_error(res) or 'continued silently'}"
    )


def shape_change(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    config = (w / "config.json").read_text()
    res = _train(tree, w, "--set", "num_queries=8")
    rewritten = (w / "config.json").read_text() != config
    val = w / "shapes_val"
    ev = tree.run(
        "evaluate_detr.py", "--workdir", str(w),
        "--annotations", str(val / "annotations.json"), "--images", str(val / "images"),
    )  # fmt: skip
    return rewritten or ev.rc != 0, (
        f"resume exit {res.rc}, config.json {'rewritten' if rewritten else 'kept'}; "
        f"evaluating the intact run afterwards: exit {ev.rc}"
    )


def val_options(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    flag = ["--allow-config-change"] if "allow-config-change" in _help(tree) else []
    _train(tree, w, "--set", "num_val=8", *flag)
    ann = json.loads((w / "shapes_val" / "annotations.json").read_text())
    n = len(ann["images"])
    return n != 8, f"held-out split after --set num_val=8: {n} images"


def nan_loss(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = tmp / "w"
    res = _train(tree, w, "--set", "lr=1e12")
    steps = sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit())
    return res.rc == 0, f"exit {res.rc}, checkpoints {steps}: {_last_error(res) or 'no error'}"


def two_runs(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = tmp / "w"
    procs = [tree.run("train_detr.py", "--preset", "smoke", "--workdir", str(w), wait=False)]
    time.sleep(2.0)
    procs.append(tree.run("train_detr.py", "--preset", "smoke", "--workdir", str(w), wait=False))
    outputs = [p.communicate(timeout=900) for p in procs]
    results = [Result(p.returncode, *o) for p, o in zip(procs, outputs, strict=True)]
    refused = any(("in use by pid" in r.err or "lock" in r.err.lower()) and r.rc for r in results)
    return not refused, "; ".join(
        f"run {i + 1}: exit {r.rc} {_last_error(r)[:70]}" for i, r in enumerate(results)
    )


def unreadable_step(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    for path in (w / "checkpoints" / "4").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"")  # an empty chunk file: the step cannot be read at all
    res = _train(tree, w)
    noise = res.err.count("Event loop is closed")
    return res.rc != 0 or noise > 0, (
        f"exit {res.rc}, {noise} 'Event loop is closed' lines: {_last_error(res)[:90]}"
    )


def _trained_for_eval(tree: Tree, tmp: Path) -> Path:
    """A shapes model that detects something (the smoke model's AP is ~0, where a wrong
    category mapping cannot show): 1000 steps on 2048 images, 100 held out."""
    return _base_run(
        tree, tmp, "--preset", "shapes", "--steps", "1000", "--set", "num_train=2048",
        "--set", "num_val=100", "--set", "eval_every=1000", "--set", "checkpoint_every=1000",
    )  # fmt: skip


def reversed_categories(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _trained_for_eval(tree, tmp)
    val = w / "shapes_val"
    coco = json.loads((val / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    ids = sorted(names)
    remap = dict(zip(ids, ids[::-1], strict=True))
    coco["categories"] = [{"id": remap[i], "name": names[i]} for i in ids[::-1]]
    for a in coco["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    rev = tmp / "reversed.json"
    rev.write_text(json.dumps(coco))
    scores = []
    for ann in (val / "annotations.json", rev):
        res = tree.run(
            "evaluate_detr.py", "--workdir", str(w),
            "--annotations", str(ann), "--images", str(val / "images"),
        )  # fmt: skip
        scores.append(_summary(res).get("AP50", float("nan")))
    same = scores[0] == scores[1]
    return not same, f"AP50 with the file's categories {scores[0]}, reversed {scores[1]}"


def eval_writes(tree: Tree, tmp: Path) -> tuple[bool, str]:
    w = _base_run(tree, tmp)
    val = w / "shapes_val"
    shutil.rmtree(w / "checkpoints")  # a run folder without checkpoints (copied, say)
    before = _listing(w)
    res = tree.run(
        "evaluate_detr.py", "--workdir", str(w),
        "--annotations", str(val / "annotations.json"), "--images", str(val / "images"),
    )  # fmt: skip
    created = sorted({p for p, _ in _listing(w)} - {p for p, _ in before})
    return bool(created), f"exit {res.rc}; created in the run folder: {created or 'nothing'}"


def _help(tree: Tree) -> str:
    return tree.run("train_detr.py", "--help").out


SCENARIOS: dict[str, tuple[str, Callable[[Tree, Path], tuple[bool, str]]]] = {
    "flipped": ("flipped bytes inside an array file, then resume", flipped_bytes),
    "fresh": ("--fresh on a workdir that holds a run", fresh_deletes),
    "config": ("resume with another --set lr", config_change),
    "shape": ("resume with another num_queries, then evaluate", shape_change),
    "val": ("resume with another num_val (held-out split)", val_options),
    "nan": ("a non-finite loss (lr 1e12)", nan_loss),
    "two": ("two runs started in one workdir", two_runs),
    "unreadable": ("a checkpoint step that cannot be read, then resume", unreadable_step),
    "categories": ("evaluation with the categories in reversed order", reversed_categories),
    "evalwrites": ("evaluation of a run folder creates files in it", eval_writes),
    "settype": ("--set steps=abc", bad_set_type),
    "setstring": ("--set name=test", bad_set_string),
}


def _old_tree(rev: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev],
        check=True, capture_output=True,
    )  # fmt: skip
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-rev", default=OLD_REV)
    parser.add_argument("--only", default="", help="comma-separated scenario keys")
    args = parser.parse_args()
    keys = [k for k in args.only.split(",") if k] or list(SCENARIOS)
    unknown = sorted(set(keys) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    scratch = Path(tempfile.mkdtemp(prefix="harness-failures-"))
    old_root = _old_tree(args.old_rev, scratch / "old")
    trees = {
        "old": Tree(old_root, scratch / "cache-old"),
        "new": Tree(REPO, scratch / "cache-new"),
    }
    rows, ok = [], True
    try:
        for key in keys:
            title, fn = SCENARIOS[key]
            seen = {}
            for side, tree in trees.items():
                tmp = scratch / f"{key}-{side}"
                tmp.mkdir()
                t = time.perf_counter()
                seen[side] = (*fn(tree, tmp), time.perf_counter() - t)
            reproduced, fixed = seen["old"][0], not seen["new"][0]
            ok &= reproduced and fixed
            row = {
                "scenario": key, "what": title, "reproduced_on_old": reproduced,
                "fixed_now": fixed, "old": seen["old"][1], "new": seen["new"][1],
                "seconds": round(seen["old"][2] + seen["new"][2], 1),
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_root)],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n| failure | old code ({args.old_rev}) | this code | reproduced | fixed |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['what']} | {r['old']} | {r['new']} | "
            f"{'yes' if r['reproduced_on_old'] else 'NO'} | {'yes' if r['fixed_now'] else 'NO'} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
