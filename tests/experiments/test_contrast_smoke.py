"""Smoke test of experiments/contrast/: each PyTorch-vs-JAX script at a small size.

Each script checks its own claims (the JAX and PyTorch values it prints agree, or the
PyTorch error it shows is raised) and returns what it found; the assertions here pin the
contrast itself, so a PyTorch or JAX change of behaviour fails the test.
"""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

CONTRAST = Path(__file__).resolve().parents[2] / "experiments" / "contrast"


def _main(name):
    spec = importlib.util.spec_from_file_location(f"contrast_{name}", CONTRAST / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_every_script_is_covered():
    assert {p.stem for p in CONTRAST.glob("*.py")} == {
        "inplace", "grad_accumulation", "retain_graph", "detach", "jit_side_effects",
        "custom_gradient", "per_example_grads", "hvp", "out_of_bounds", "vmap_randomness",
    }  # fmt: skip


def test_inplace(capsys):
    out = _main("inplace")(["--n", "3"])
    assert "modified by an inplace operation" in out["torch_error"]
    assert out["jax_grad"][0] == 0.0
    assert "PyTorch" in capsys.readouterr().out


def test_grad_accumulation():
    out = _main("grad_accumulation")(["--calls", "2"])
    assert out["torch_grads"][1] == [2 * g for g in out["jax_grad"]]


def test_retain_graph():
    out = _main("retain_graph")(["--n", "2"])
    assert "backward through the graph a second time" in out["torch_error"]
    assert len(out["jax_grads"]) == 2


def test_detach():
    out = _main("detach")(["--n", "2"])
    assert out["shares_storage"] and out["torch_y_after"] == [0.0, 0.0]
    assert out["jax_y"] == [2.0, 4.0]


def test_jit_side_effects():
    out = _main("jit_side_effects")(["--calls", "2"])
    assert out["torch_outs"] == [1.0, 2.0] and out["jax_outs"] == [1.0, 1.0]
    assert out["jax_traces"] == 1


def test_custom_gradient():
    out = _main("custom_gradient")(["--n", "8"])
    assert all(d < 1e-4 for d in out["max_rel_diff"].values())
    assert out["differentiated_alpha_rel_diff"] > 1e-3
    assert "forward-mode" in out["jvp_error"] and "setup_context" in out["torch_func_error"]


def test_per_example_grads():
    out = _main("per_example_grads")(["--batch", "2", "--repeats", "1"])
    assert set(out["ms"]) == {
        "torch loop", "torch.func vmap(grad)", "jax loop of jit(grad)", "jax jit(vmap(grad))",
    }  # fmt: skip


def test_hvp():
    out = _main("hvp")(["--shape", "3", "4", "--repeats", "2"])
    assert len(out["us"]) == 7 and len(out["compile_s"]) == 4


def test_out_of_bounds():
    out = _main("out_of_bounds")(["--n", "3"])
    assert "out of bounds" in out["torch_error"]
    assert out["gathered"] == 2 and out["filled"] == -1


def test_vmap_randomness():
    out = _main("vmap_randomness")(["--batch", "3"])
    assert "randomness" in out["torch_error"] and len(set(out["jax_different"])) == 3
