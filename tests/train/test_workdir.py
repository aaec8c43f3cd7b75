"""Workdirs: a run's config and classes saved once; resumes, --fresh and locks refuse."""

import dataclasses
import json

import pytest

from jaxvision import parallel, train


@dataclasses.dataclass
class Cfg:
    steps: int = 10
    lr: float = 1e-3


def test_new_run_saves_config_once_and_a_resume_checks_it(tmp_path):
    with train.Run.open(tmp_path / "w", Cfg()) as run:
        assert not run.resumable
        run.check_class_names(["a", "b"])
    saved = (tmp_path / "w" / "config.json").read_text()
    assert json.loads(saved) == {"type": "Cfg", "config": {"steps": 10, "lr": 0.001}}
    (tmp_path / "w" / "checkpoints" / "5").mkdir(parents=True)

    with train.Run.open(tmp_path / "w", Cfg()) as run:
        assert run.resumable and run.config_changes == []
        run.check_class_names(["a", "b"])
        with pytest.raises(train.RunMismatchError, match=r"trained on classes \['a', 'b'\]"):
            run.check_class_names(["b", "a"])

    # Forgetting a --set: refused with the diff; nothing is rewritten.
    with pytest.raises(train.RunMismatchError, match=r"lr: 0.001 \(saved\) -> 0.0005 \(now\)"):
        train.Run.open(tmp_path / "w", Cfg(lr=5e-4))
    with train.Run.open(tmp_path / "w", Cfg(lr=5e-4), allow_config_change=True) as run:
        assert run.config_changes == ["lr: 0.001 (saved) -> 0.0005 (now)"]
    assert (tmp_path / "w" / "config.json").read_text() == saved
    change = json.loads((tmp_path / "w" / "config_changes.jsonl").read_text())
    assert change["diff"] == ["lr: 0.001 (saved) -> 0.0005 (now)"]

    assert train.Run.read(tmp_path / "w", Cfg) == (Cfg(), ["a", "b"])
    with pytest.raises(train.RunMismatchError, match="holds no training run"):
        train.Run.read(tmp_path / "nothing", Cfg)
    assert not (tmp_path / "nothing").exists()


def test_fresh_never_deletes_a_run(tmp_path):
    workdir = tmp_path / "w"
    train.Run.open(workdir, Cfg()).close()
    (workdir / "checkpoints" / "5").mkdir(parents=True)
    with pytest.raises(train.RunMismatchError, match="--fresh never deletes one"):
        train.Run.open(workdir, Cfg(steps=3), fresh=True)
    assert (workdir / "checkpoints" / "5").is_dir()
    with train.Run.open(workdir, Cfg(steps=3), fresh=True, overwrite=True) as run:
        assert not run.resumable
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("w.replaced-")]
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "5").is_dir()
    assert json.loads((workdir / "config.json").read_text())["config"]["steps"] == 3


def test_a_second_run_on_a_locked_workdir_is_refused(tmp_path):
    with train.Run.open(tmp_path, Cfg()):
        with pytest.raises(parallel.WorkdirLockError, match=r"in use by pid \d+ on host"):
            train.Run.open(tmp_path, Cfg())
    train.Run.open(tmp_path, Cfg()).close()  # released


def test_derived_dataset_is_rebuilt_when_its_options_change(tmp_path):
    built = []

    def build(folder):
        built.append(folder.name)
        (folder / "data.txt").write_text(str(len(built)))

    path = train.derived_dataset(tmp_path / "val", {"n": 5}, build)
    assert train.derived_dataset(tmp_path / "val", {"n": 5}, build) == path
    assert len(built) == 1
    train.derived_dataset(tmp_path / "val", {"n": 6}, build)
    assert len(built) == 2 and (path / "data.txt").read_text() == "2"
    assert json.loads((path / "options.json").read_text()) == {"n": 6}
