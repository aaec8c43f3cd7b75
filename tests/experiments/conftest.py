"""Shared fixture of the experiment smoke tests: the scripts under experiments/ as modules."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _load(name: str):
    """``experiments/<name>.py`` imported once as module ``name``; the folder goes on
    ``sys.path`` because the DETR scripts import their siblings (``detr_config``, ...)."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_experiment():
    """``load_experiment("train_detr")`` -> the module of ``experiments/train_detr.py``."""
    return _load
