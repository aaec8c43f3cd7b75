"""Smoke test of experiments/train_face.py: a few steps on a handful of identities."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.slow
def test_train_face_runs_and_reports(tmp_path):
    spec = importlib.util.spec_from_file_location("train_face", EXPERIMENTS / "train_face.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_face"] = module
    spec.loader.exec_module(module)
    sets = ["steps=2", "log_every=1", "train_identities=6", "images_per_identity=2",
            "test_identities=4", "test_images_per_identity=3", "render_size=24",
            "crop_size=16", "batch_size=8"]
    argv = ["--workdir", str(tmp_path / "run")] + [a for s in sets for a in ("--set", s)]
    summary = module.main(argv)
    assert 0 <= summary["lfw_accuracy"] <= 1 and 0 <= summary["tar_at_far_1e-3"] <= 1
    assert (tmp_path / "run" / "crops.png").exists()
    assert (tmp_path / "run" / "embeddings.png").exists()
