"""Timer, cadence, metrics writer, NaN guard, summary and the CLI wrapper."""

import io
import json
import time

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import train


def test_timer_separates_sections_and_wall_from_cpu():
    timer = train.Timer()
    with timer("data"):
        time.sleep(0.05)  # waits: wall time, almost no CPU time
    for _ in range(3):
        with timer("step"):
            np.linalg.svd(np.ones((200, 200)))
    s = timer.summary()
    assert timer.count("step") == 3 and timer.count("data") == 1
    assert s["data_s"] >= 0.05 and s["data_cpu_s"] < 0.8 * s["data_s"]
    assert s["step_median_s"] <= s["step_s"] <= s["total_s"]


def test_every_fires_on_multiples_and_the_last_step():
    assert [s for s in range(1, 8) if train.every(s, 3, total=7)] == [3, 6, 7]
    assert [s for s in range(1, 8) if train.every(s, 3)] == [3, 6]


def test_metrics_writer_resume_drops_undone_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = train.MetricsWriter(path)
    for s in (2, 4, 6):
        w.write(s, loss=1.0 / s)
    w.write_dict(4, {"AP50": 0.5})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4, 6, 4]
    resumed = train.MetricsWriter(path, resume_step=4)
    assert resumed.series("loss") == ([2, 4], [0.5, 0.25])
    assert resumed.last("AP50") == {"step": 4, "AP50": 0.5}
    assert len(path.read_text().splitlines()) == 3
    assert train.MetricsWriter(path, enabled=False).rows  # a reader keeps the rows
    assert train.MetricsWriter(path).rows == []  # a new run starts an empty history


def test_check_finite_names_step_and_terms():
    assert train.check_finite(1, {"loss": jnp.float32(2.0), "hist": jnp.zeros(3)}) == {"loss": 2.0}
    with pytest.raises(train.NonFiniteLossError, match=r"at step 7: loss=nan, loss_bbox=inf"):
        train.check_finite(7, {"loss": jnp.nan, "loss_bbox": jnp.inf, "loss_ce": 1.0})


def test_summary_table_and_last_json_line_agree(capsys):
    out = io.StringIO()
    train.print_summary({"AP50": 0.912345, "steps": 4, "preset": "smoke"}, file=out)
    lines = out.getvalue().splitlines()
    assert json.loads(lines[-1]) == {"AP50": 0.912345, "steps": 4, "preset": "smoke"}
    assert "AP50    0.9123" in lines


def test_run_cli_prints_one_line_and_exits_1(capsys):
    def bad():
        train.override(train.Timer, [])  # not a dataclass: a plain TypeError propagates

    def mismatch():
        raise train.RunMismatchError("another run")

    assert train.run_cli(mismatch) == 1
    assert capsys.readouterr().err == "error: another run\n"
    with pytest.raises(TypeError):
        train.run_cli(bad)
    assert train.run_cli(lambda: None) == 0
