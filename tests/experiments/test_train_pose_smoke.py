"""Smoke test of experiments/train_pose.py: two steps on a handful of generated figures,
pycocotools' keypoint AP, the picture and the metrics file (the harness's resume is
tested in tests/train)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.slow
def test_train_pose_runs_and_reports(tmp_path):
    spec = importlib.util.spec_from_file_location("train_pose", EXPERIMENTS / "train_pose.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_pose"] = module
    spec.loader.exec_module(module)
    sets = [
        "steps=2",
        "log_every=1",
        "checkpoint_every=2",
        "train_images=8",
        "val_images=2",
        "image_size=64",
        "input_h=32",
        "input_w=16",
        "batch_size=8",
    ]
    argv = ["--workdir", str(tmp_path / "run")] + [a for s in sets for a in ("--set", s)]
    summary = module.main(argv)
    assert summary["steps"] == 2 and summary["map"] == "8x4"
    assert 0 <= summary["AP"] <= 1 and 0 <= summary["PCK@0.05"] <= 1
    assert summary["error_px"] > 0
    assert (tmp_path / "run" / "predictions.png").exists()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
