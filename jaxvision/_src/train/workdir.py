"""A run's workdir: locked while written, its configuration and classes saved once.

``Run.open`` is what a training script calls before it writes anything:

- the workdir is locked (:class:`jaxvision.parallel.WorkdirLock`, naming the holder);
- a new run saves ``config.json`` (the configuration and its class name) once;
- a resume compares the configuration with the saved one and refuses with a
  field-by-field diff, unless ``allow_config_change`` (then the change is logged in
  ``config_changes.jsonl`` and ``config.json`` stays as the run began);
- ``fresh`` on a workdir that holds a run refuses; with ``overwrite`` the old run is moved
  aside to ``<workdir>.replaced-<time>``, never deleted.

``Run.read`` is what an evaluation opens: read-only, no lock, nothing created.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxvision._src.export import export
from jaxvision._src.parallel.checkpoint import WorkdirLock
from jaxvision._src.train.config import config_diff, config_from_dict, config_to_dict
from jaxvision._src.train.errors import RunMismatchError

CONFIG = "config.json"
CLASSES = "class_names.json"
CHANGES = "config_changes.jsonl"
CHECKPOINTS = "checkpoints"


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


def _holds_run(workdir: Path) -> bool:
    ckpt = workdir / CHECKPOINTS
    return (workdir / CONFIG).exists() or (ckpt.is_dir() and any(ckpt.iterdir()))


@export("train.Run")
class Run:
    """An open workdir: its lock, configuration and class names.

    Example::

      run = train.Run.open(workdir, cfg, fresh=args.fresh, overwrite=args.overwrite,
                           allow_config_change=args.allow_config_change)
      run.check_class_names(dataset.class_names)
      ...
      run.close()

    Attributes:
      workdir: the run's folder.
      config: the configuration of this process (the dataclass instance).
      resumable: whether the workdir already held this run (resume from its checkpoints).
      config_changes: the diff lines accepted with ``allow_config_change`` (else empty).
    """

    def __init__(
        self,
        workdir: Path,
        config: Any,
        lock: WorkdirLock | None,
        resumable: bool,
        config_changes: list[str],
    ) -> None:
        self.workdir = workdir
        self.config = config
        self._lock = lock
        self.resumable = resumable
        self.config_changes = config_changes

    @classmethod
    def open(
        cls,
        workdir: str | os.PathLike,
        config: Any,
        *,
        fresh: bool = False,
        overwrite: bool = False,
        allow_config_change: bool = False,
        lead: bool = True,
    ) -> Run:
        """Locks ``workdir`` and checks ``config`` against the run it holds (see the module).

        Args:
          workdir: the folder; created if missing.
          config: the run's dataclass configuration.
          fresh: start a new run; refuses if the workdir holds one (unless ``overwrite``).
          overwrite: with ``fresh``, move the old run aside to ``<workdir>.replaced-<time>``.
          allow_config_change: resume even if the configuration differs from the saved one.
          lead: this process writes (process 0); the others only read and compare.

        Raises:
          RunMismatchError: ``fresh`` on an existing run, or a configuration that differs.
          jaxvision.parallel.WorkdirLockError: another live process holds the workdir.
        """
        workdir = Path(workdir)
        lock = None
        if lead:
            workdir.mkdir(parents=True, exist_ok=True)
            lock = WorkdirLock(workdir)
        existed = _holds_run(workdir)
        try:
            if fresh and existed:
                if not overwrite:
                    raise RunMismatchError(
                        f"{workdir} holds a run and --fresh never deletes one: pass another "
                        "--workdir, or add --overwrite to move the old run aside"
                    )
                if lead:
                    lock.release()
                    lock = None
                    aside = workdir.with_name(
                        f"{workdir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
                    )
                    workdir.rename(aside)
                    print(f"moved the previous run aside to {aside}", flush=True)
                    workdir.mkdir()
                    lock = WorkdirLock(workdir)
            changes = cls._check_config(workdir, config, allow_config_change, lead)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(workdir, config, lock, existed and not fresh, changes)

    @staticmethod
    def _check_config(workdir: Path, config: Any, allow: bool, lead: bool) -> list[str]:
        now = {"type": type(config).__name__, "config": config_to_dict(config)}
        path = workdir / CONFIG
        if not path.exists():
            if _holds_run(workdir) and not allow:
                raise RunMismatchError(
                    f"{workdir} holds checkpoints but no {CONFIG}, so its configuration is "
                    "unknown: pass another --workdir, or --allow-config-change to resume it"
                )
            if lead:
                _write_json(path, now)
            return []
        saved = json.loads(path.read_text())
        diff = config_diff(saved.get("config", {}), now["config"])
        if saved.get("type") != now["type"]:
            diff.insert(0, f"(type): {saved.get('type')} (saved) -> {now['type']} (now)")
        if diff and not allow:
            lines = "\n  ".join(diff)
            raise RunMismatchError(
                f"{workdir} holds a run with another configuration:\n  {lines}\nresume with "
                "the saved values (drop the --set), pass another --workdir, or pass "
                "--allow-config-change to continue this run with the new values"
            )
        if diff and lead:
            with (workdir / CHANGES).open("a") as f:
                f.write(json.dumps({"time": time.time(), "diff": diff}) + "\n")
        return diff

    def check_class_names(self, class_names: Sequence[str], *, lead: bool = True) -> None:
        """Saves the class names with a new run; refuses names that differ from the saved.

        Raises:
          RunMismatchError: the workdir's run was trained on other classes (or order).
        """
        path = self.workdir / CLASSES
        names = [str(n) for n in class_names]
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != names:
                raise RunMismatchError(
                    f"{self.workdir} was trained on classes {saved}, this data has {names}"
                )
        elif lead:
            _write_json(path, names)

    def close(self) -> None:
        """Releases the workdir lock."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def read(workdir: str | os.PathLike, config_type: type) -> tuple[Any, list[str]]:
        """The configuration and class names of a finished or running run, read-only.

        Nothing is created or locked: an evaluation may read a run while it trains.

        Raises:
          RunMismatchError: the folder holds no run of this harness, or of another type.
        """
        workdir = Path(workdir)
        path, classes = workdir / CONFIG, workdir / CLASSES
        if not path.exists() or not classes.exists():
            raise RunMismatchError(f"{workdir} holds no training run ({CONFIG}, {CLASSES})")
        saved = json.loads(path.read_text())
        if saved.get("type") != config_type.__name__:
            raise RunMismatchError(
                f"{workdir} holds a {saved.get('type')} run, expected {config_type.__name__}"
            )
        return config_from_dict(config_type, saved["config"]), json.loads(classes.read_text())


@export("train.derived_dataset")
def derived_dataset(
    directory: str | os.PathLike, options: dict[str, Any], build: Callable[[Path], None]
) -> Path:
    """A folder of data derived from the configuration, regenerated when its options change.

    ``directory/options.json`` records the options it was built with. If they equal
    ``options`` the folder is reused; otherwise ``build(tmp)`` writes a new one into a
    temporary folder, which then replaces the old one (a regenerated derived dataset, not
    a run's results).

    Args:
      directory: the folder (e.g. ``workdir / "shapes_val"``).
      options: JSON-compatible options that determine the contents.
      build: writes the data into the folder it is given.

    Returns:
      ``directory`` as a ``Path``.

    Examples:
      >>> import tempfile, pathlib
      >>> root = pathlib.Path(tempfile.mkdtemp())
      >>> def build(d):
      ...     (d / "n.txt").write_text("built")
      >>> path = derived_dataset(root / "val", {"n": 5}, build)
      >>> (path / "n.txt").read_text()
      'built'
    """
    directory = Path(directory)
    record = directory / "options.json"
    wanted = json.loads(json.dumps(options))
    if record.exists() and json.loads(record.read_text()) == wanted:
        return directory
    tmp = directory.with_name(directory.name + ".building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    build(tmp)
    _write_json(tmp / "options.json", wanted)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory
