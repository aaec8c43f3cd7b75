"""The DETR scripts on the harness, tried as a new user would, on the tiny preset.

Each failure of issue 11 has a test here (the harness's own tests are in tests/train and
tests/parallel): flipped bytes in a checkpoint, a second run on a locked workdir, --fresh
on an existing run, a resume with another configuration, a NaN loss, categories in
another order or with other names in evaluation, a bad --set.
"""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxvision import parallel, train


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent compilation cache: the runs of one configuration compile once."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    old = {n: getattr(jax.config, n) for n in names}
    values = (str(tmp_path_factory.mktemp("xla_cache")), 0.0, 0)
    for n, v in zip(names, values, strict=True):
        jax.config.update(n, v)
    cc.reset_cache()
    yield
    for n, v in old.items():
        jax.config.update(n, v)
    cc.reset_cache()


def _flip_bytes_in_array_files(step_dir):
    """Inverts 4 bytes in the middle of each OCDBT data file (the arrays' chunks)."""
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            raw = bytearray(path.read_bytes())
            middle = len(raw) // 2
            raw[middle : middle + 4] = bytes(b ^ 0xFF for b in raw[middle : middle + 4])
            path.write_bytes(bytes(raw))


def _step_checksums(workdir, step):
    return json.loads((workdir / "checkpoints" / str(step) / "data" / "metadata").read_text())[
        "checksums"
    ]


def _losses(workdir):
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.mark.slow
def test_train_damage_resume_evaluate_and_nan(
    tmp_path, capsys, monkeypatch, compile_cache, load_experiment
):
    """One test, so that its four runs share one compilation (the cache)."""
    train_detr = load_experiment("train_detr")
    workdir = tmp_path / "run"
    argv = ["--preset", "smoke", "--workdir", str(workdir)]

    first = train_detr.main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == first  # the last line is the summary as JSON
    assert 0.0 <= first["AP"] <= first["AP50"] <= 1.0
    assert first["devices"] == 8 and first["resumed_from"] == 0
    assert (workdir / "curves.png").stat().st_size > 0
    assert (workdir / "predictions.png").stat().st_size > 0
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
    straight_sums, straight_losses = _step_checksums(workdir, 4), _losses(workdir)
    assert [s for s, _ in straight_losses] == [1, 2, 3, 4]

    # Flipped bytes inside an array file of step 4 (restored silently before): the
    # resume names the damage in one line, falls back to step 2 and ends bit-identical.
    _flip_bytes_in_array_files(workdir / "checkpoints" / "4")
    resumed = train_detr.main(argv)
    out = capsys.readouterr().out
    assert resumed["resumed_from"] == 2
    assert "checkpoint step 4 at" in out and "is damaged" in out and "falling back to step 2" in out
    assert _step_checksums(workdir, 4) == straight_sums  # params, optimizer, step, RNG
    assert _losses(workdir) == straight_losses
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert resumed[key] == first[key]

    # Evaluation maps categories by name: the held-out file with its categories reversed
    # (AP 0.0 without a warning before) scores the same; other names are refused. The
    # workdir is only read.
    val = workdir / "shapes_val"
    coco = json.loads((val / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    ids = sorted(names)
    remap = dict(zip(ids, ids[::-1], strict=True))
    coco["categories"] = [{"id": remap[i], "name": names[i]} for i in ids[::-1]]
    for a in coco["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    reversed_file = tmp_path / "reversed.json"
    reversed_file.write_text(json.dumps(coco))
    before = _listing(workdir)
    evaluate_detr = load_experiment("evaluate_detr")
    scored = evaluate_detr.main(
        [
            "--workdir",
            str(workdir),
            "--annotations",
            str(reversed_file),
            "--images",
            str(val / "images"),
        ]
    )
    assert scored["step"] == 4 and scored["images"] == 16
    assert scored["AP"] == first["AP"] and scored["AP50"] == first["AP50"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == scored
    coco["categories"][0]["name"] = "hexagon"
    reversed_file.write_text(json.dumps(coco))
    with pytest.raises(train.RunMismatchError, match=r"missing \['.*'\], unknown \['hexagon'\]"):
        evaluate_detr.main(
            [
                "--workdir",
                str(workdir),
                "--annotations",
                str(reversed_file),
                "--images",
                str(val / "images"),
            ]
        )
    assert _listing(workdir) == before

    # A NaN loss (trained through, exit 0 before): stops at its step, keeps the last
    # finite checkpoint, one line on stderr, exit status 1.
    detr_task = load_experiment("detr_task")
    clean = detr_task.train_batches

    def poisoned(cfg, d, mesh, start):
        for i, batch in enumerate(clean(cfg, d, mesh, start), start):
            if i == 2:  # the batch of step 3
                boxes = np.asarray(batch["boxes"]).copy()
                boxes[0, 0, 0] = np.nan
                batch = {**batch, "boxes": parallel.shard_batch(boxes, mesh)}
            yield batch

    monkeypatch.setattr(detr_task, "train_batches", poisoned)
    workdir = tmp_path / "nan"
    argv = ["--preset", "smoke", "--workdir", str(workdir)]
    assert train.run_cli(lambda: train_detr.main(argv)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: non-finite loss at step 3: ") and err.count("\n") == 1
    assert "loss=nan" in err and "loss_bbox=nan" in err
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]
    assert [s for s, _ in _losses(workdir)] == [1, 2]


def test_runs_that_cannot_be_mixed_up(tmp_path, capsys, load_experiment):
    """Refusals that come before any compilation: --set, --fresh, another config, a lock."""
    train_detr = load_experiment("train_detr")
    with pytest.raises(train.ConfigError, match="field 'steps' expects int, got 'abc'"):
        train_detr.parse_args(["--set", "steps=abc"])
    with pytest.raises(train.ConfigError, match="has no field 'nope'"):
        train_detr.parse_args(["--set", "nope=1"])
    cfg, _ = train_detr.parse_args(["--preset", "smoke", "--set", "name=test", "--seed", "3"])
    assert cfg.name == "test" and cfg.seed == 3  # a plain string, no JSON needed

    workdir = tmp_path / "run"
    argv = ["--preset", "smoke", "--workdir", str(workdir)]
    train.Run.open(workdir, train_detr.parse_args(argv)[0]).close()  # a run's config.json
    (workdir / "checkpoints" / "2").mkdir(parents=True)
    saved = (workdir / "config.json").read_text()

    with pytest.raises(train.RunMismatchError, match=r"lr: 0.001 \(saved\) -> 0.0005 \(now\)"):
        train_detr.main([*argv, "--set", "lr=5e-4"])
    # A shape change rewrote config.json and then failed as "checkpoint unreadable".
    with pytest.raises(train.RunMismatchError, match=r"num_queries: 4 \(saved\) -> 8 \(now\)"):
        train_detr.main([*argv, "--set", "num_queries=8"])
    with pytest.raises(train.RunMismatchError, match="--fresh never deletes one"):
        train_detr.main([*argv, "--fresh"])
    with train.Run.open(workdir, train_detr.parse_args(argv)[0]):
        with pytest.raises(parallel.WorkdirLockError, match=r"in use by pid \d+ on host"):
            train_detr.main(argv)
    assert (workdir / "config.json").read_text() == saved
    assert (workdir / "checkpoints" / "2").is_dir()
    shutil.rmtree(workdir / "checkpoints")
