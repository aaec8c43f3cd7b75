"""Smoke test of the training and evaluation scripts: a few steps of the tiny preset."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _load(name):
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_train_resume_and_evaluate(tmp_path, capsys):
    train_detr = _load("train_detr")
    workdir = tmp_path / "run"
    argv = ["--preset", "smoke", "--workdir", str(workdir)]

    first = train_detr.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == first  # the last line is the metrics as JSON
    for key in ("AP", "AP50", "AP75", "minutes", "step_s", "params"):
        assert key in first
    assert 0.0 <= first["AP"] <= first["AP50"] <= 1.0
    assert first["devices"] == 8 and first["resumed_from"] == 0
    assert (workdir / "curves.png").stat().st_size > 0
    assert (workdir / "predictions.png").stat().st_size > 0
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]

    # A run killed after step 2: the same command resumes there and ends where the
    # uninterrupted run ended.
    shutil.rmtree(workdir / "checkpoints" / "4")
    resumed = train_detr.main(argv)
    assert resumed["resumed_from"] == 2
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert resumed[key] == first[key]

    evaluate_detr = _load("evaluate_detr")
    val = workdir / "shapes_val"
    scored = evaluate_detr.main(
        [
            "--workdir",
            str(workdir),
            "--annotations",
            str(val / "annotations.json"),
            "--images",
            str(val / "images"),
        ]
    )
    assert scored["step"] == 4 and scored["images"] == 16
    assert scored["AP"] == first["AP"] and scored["AP50"] == first["AP50"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == scored


def test_unknown_override_is_refused():
    train_detr = _load("train_detr")
    with pytest.raises(SystemExit):
        train_detr.parse_args(["--set", "nope=1"])
    cfg, _ = train_detr.parse_args(["--preset", "smoke", "--set", "lr=5e-4", "--seed", "3"])
    assert cfg.lr == 5e-4 and cfg.seed == 3 and cfg.name == "smoke"
