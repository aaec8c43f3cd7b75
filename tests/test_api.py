"""The export registry, the generated namespaces and the golden API listing."""

import importlib
import warnings

import pytest

import jaxvision
from jaxvision import api
from jaxvision._src import export


def test_generated_files_are_fresh():
    stale = api.stale_files(api.load_registry())
    assert not stale, f"stale generated files {stale}: run `python -m jaxvision.api --write`"


def test_every_public_name_resolves_to_its_registered_object():
    registry = api.load_registry()
    endpoints = registry.endpoints()
    for e in endpoints:
        module = importlib.import_module(f"jaxvision.{e.namespace}")
        if e.deprecated:
            continue
        assert getattr(module, e.symbol) is e.obj, e.name
        assert e.symbol in module.__all__


def test_namespaces_import_lazily_from_the_package():
    for ns in export.NAMESPACES:
        assert getattr(jaxvision, ns) is importlib.import_module(f"jaxvision.{ns}")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxvision.nope  # noqa: B018


def test_two_objects_claiming_one_name_are_refused():
    registry = export.Registry()

    @registry.export("boxes.thing")
    def thing():
        return 1

    def other():
        return 2

    with pytest.raises(export.ExportError, match="claimed by both"):
        registry.export("boxes.thing")(other)


@pytest.mark.parametrize(
    "name, message",
    [
        ("box_iou", "namespace.symbol"),
        ("boxes.a.b", "namespace.symbol"),
        ("nowhere.box_iou", "unknown namespace"),
        ("boxes._private", "underscore"),
        ("boxes.class", "namespace.symbol"),
    ],
)
def test_malformed_names_are_refused(name, message):
    with pytest.raises(export.ExportError, match=message):
        export.Registry().export(name)(lambda: None)


def test_export_returns_the_object_unchanged_and_lists_aliases():
    registry = export.Registry()

    def f(x, *, y=2):
        return x + y

    assert registry.export("ops.f", "losses.f_loss", deprecated=("ops.old_f",))(f) is f
    names = [(e.name, e.replacement) for e in registry.endpoints()]
    assert names == [("losses.f_loss", None), ("ops.f", None), ("ops.old_f", "ops.f")]
    golden = api.golden_text(registry, "ops")
    assert "def jaxvision.ops.f(x, *, y=2)" in golden
    assert "def jaxvision.ops.old_f(x, *, y=2)  # deprecated alias of jaxvision.ops.f" in golden


def test_deprecated_alias_warns_and_resolves(tmp_path, monkeypatch):
    registry = export.Registry()
    registry.export("ops.clip_boxes", deprecated=("ops.clip",))(_sample_function)
    source = api.namespace_source(registry, "ops")
    path = tmp_path / "generated_ops.py"
    path.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("generated_ops")
    assert module.clip_boxes is _sample_function
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert module.clip is _sample_function
    assert any("use jaxvision.ops.clip_boxes" in str(w.message) for w in caught)
    with pytest.raises(AttributeError):
        module.missing  # noqa: B018


def _sample_function(x):
    return x


def test_cli_prints_the_listing(capsys):
    assert api.main([]) == 0
    printed = capsys.readouterr().out
    for ns in export.NAMESPACES:
        names = [line.split()[1] for line in printed.splitlines()]
        listed = [n for n in names if n.startswith(f"jaxvision.{ns}.")]
        assert len(listed) == len(api.load_registry().endpoints(ns))


def test_private_code_never_imports_the_generated_namespaces():
    import pathlib
    import re

    src = pathlib.Path(api.PACKAGE_DIR) / "_src"
    public = "|".join(export.NAMESPACES)
    pattern = re.compile(
        rf"^\s*(from jaxvision import|(from|import) jaxvision\.({public})\b)", re.M
    )
    offenders = [str(p) for p in src.rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, f"import from jaxvision._src instead: {offenders}"


def test_an_installed_copy_writes_no_golden_files(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "jaxvision"
    installed.mkdir(parents=True)
    (tmp_path / "site-packages" / "tests").mkdir()  # a stray tests/ beside it is not a checkout
    monkeypatch.setattr(api, "PACKAGE_DIR", installed)
    assert api.checkout_golden_dir() is None
    files = api.expected_files(api.load_registry())
    assert files and all(path.parent == installed for path in files)
    golden = tmp_path / "golden"
    files = api.expected_files(api.load_registry(), golden)
    assert {p for p in files if p.parent == golden} == {
        golden / f"{ns}.txt" for ns in export.NAMESPACES
    }
