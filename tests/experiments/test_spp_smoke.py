"""Smoke test of experiments/spp.py: a few steps of two variants (each compile costs)."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "spp.py"


def test_spp_experiment_runs_and_reports_every_variant_and_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("spp_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    options = ["steps=2", "batch=4", "width=4", "train_sizes=40", "test_sizes=40,56"]
    options += ["test_per_size=4", "log_every=1", "variants=spp multi-size,fixed crop"]
    argv = ["--workdir", str(tmp_path / "run")]
    for option in options:
        argv += ["--set", option]
    out = module.main(argv)
    assert set(out["accuracy"]) == {"spp multi-size", "fixed crop"}
    assert all(set(acc) == {40, 56} for acc in out["accuracy"].values())
    assert (tmp_path / "run" / "accuracy.png").stat().st_size > 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "spp multi-size mean acc" in last
