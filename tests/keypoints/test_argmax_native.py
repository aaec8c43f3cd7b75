"""The native CPU heatmap decode (C++ FFI kernel) against the XLA path, and its fallbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxvision._src.keypoints import argmax as A
from jaxvision._src.keypoints.argmax import heatmap_argmax
from jaxvision._src.native import loader

TARGET = loader.cpu_target("heatmap_argmax")
needs_kernel = pytest.mark.skipif(TARGET is None, reason="no C++ compiler: XLA path only")


def _decodes(h, refine="quarter"):
    """``(XLA, native)`` outputs ``(x, y, peak, keypoints)`` of float32 maps ``h``."""
    h = jnp.asarray(h, jnp.float32)
    xla = jax.jit(lambda m: A._xla_decode(m, refine))(h)
    native = jax.jit(lambda m: A._native_decode(m, TARGET, refine))(h)
    return [np.asarray(a) for a in xla], [np.asarray(b) for b in native]


def _cases():
    rng = np.random.default_rng(0)
    yield "random, tiles + vectors + tail", rng.normal(size=(3, 11, 20, 17))
    yield "three levels (ties)", rng.integers(0, 3, (2, 6, 40, 5))
    yield "constant", np.zeros((2, 4, 4, 3))
    yield "all -inf", np.full((1, 3, 5, 2), -np.inf)
    yield "one pixel", rng.normal(size=(4, 1, 1, 1))
    yield "one row / one column", rng.normal(size=(1, 7, 1, 3))
    tie = np.zeros((1, 5, 12, 1))
    tie[0, 3, 1, 0] = tie[0, 1, 9, 0] = 2.0  # the later column holds the earlier row
    yield "tie across columns", tie
    border = rng.uniform(size=(2, 6, 9, 4))
    border[0, 0, 4, 0] = border[0, 5, 0, 1] = border[1, 2, 8, 2] = 5.0
    yield "peaks on the border", border
    nan = rng.uniform(size=(2, 8, 30, 6))
    nan[0, 3, 7, 1] = nan[1, 0, 0, 5] = np.nan
    nan[1, 4, 2, 2] = np.inf
    nan[1, 6, 3, 2] = -np.inf  # both infinities, no NaN: a finite-peak map
    nan[0, 4, 20, 3] = 9.0
    nan[0, 4, 21, 3] = np.nan  # a NaN neighbour of the peak
    yield "NaN and infinities", nan
    # The kernel reads a map in bands of rows (about 24 KB of rows, at least 2): maps taller
    # than one band merge the bands' maxima, sums and first rows.
    yield "many bands (the benchmark's maps)", rng.normal(size=(3, 64, 48, 17))
    yield "ties across bands", rng.integers(0, 2, (2, 40, 64, 9))
    late = rng.uniform(size=(2, 50, 48, 17))
    late[0, 45, 3, 4] = np.nan  # in the last band only
    late[1, 30, 7, 2] = np.inf
    late[1, 2, 9, 2] = -np.inf  # both infinities, in different bands
    late[1, 49, 47, 16] = 3.0  # the peak on the last pixel
    yield "NaN and infinities in later bands", late
    yield "bands of 2 rows, a last band of 1", rng.normal(size=(2, 9, 400, 17))


@needs_kernel
@pytest.mark.parametrize("refine", ["quarter", "none"])
@pytest.mark.parametrize("name,h", list(_cases()), ids=[c[0] for c in _cases()])
def test_native_equals_the_xla_path(name, h, refine):
    xla, native = _decodes(h, refine)
    for a, b in zip(xla, native, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(b, a)  # NaN where NaN
    x, y, _, xy = native
    centre = np.stack([x, y], -1) + 0.5
    offset = xy - centre
    assert np.isin(offset, [-0.25, 0.0, 0.25]).all()
    assert (offset == 0).all() or refine == "quarter"


@needs_kernel
def test_native_first_maximum_is_numpys_and_nan_maps_are_flagged():
    h = np.random.default_rng(1).integers(0, 4, (5, 7, 9, 3)).astype(np.float32)
    h[2, 1, 1, 0] = np.nan
    _, (x, y, peak, _) = _decodes(h)
    flat = np.moveaxis(h, -1, 1).reshape(5, 3, -1)
    first = np.nanargmax(np.where(np.isnan(flat), -np.inf, flat), axis=-1)
    ok = ~np.isnan(flat).any(-1)
    np.testing.assert_array_equal((y * 9 + x)[ok], first[ok])
    assert np.isnan(peak[2, 0]) and (x[2, 0], y[2, 0]) == (8, 6)
    np.testing.assert_array_equal(peak[ok], flat.max(-1)[ok])


@needs_kernel
def test_native_path_is_what_the_cpu_lowers_and_it_vmaps_and_shards():
    h = jnp.asarray(np.random.default_rng(2).uniform(size=(8, 2, 6, 5, 3)), jnp.float32)
    f = jax.jit(lambda m: heatmap_argmax(m, refine="quarter"))
    assert "jaxvision_heatmap_argmax" in f.lower(h).as_text()
    # The jitted decode compiles to the one FFI call (no XLA op after it, which would move
    # the call off the calling thread); DARK's refinement stays in XLA.
    for refine in ("quarter", "none"):
        hlo = jax.jit(lambda m, r=refine: heatmap_argmax(m, refine=r)).lower(h).compile()
        assert "fusion" not in hlo.as_text() and "custom-call" in hlo.as_text()
    xy, score = f(h)
    vxy, vscore = jax.jit(jax.vmap(lambda m: heatmap_argmax(m, refine="quarter")))(h)
    np.testing.assert_array_equal(vxy, xy)
    np.testing.assert_array_equal(vscore, score)
    mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
    sharded = jax.jit(
        jax.shard_map(
            lambda m: heatmap_argmax(m, refine="quarter"),
            mesh=mesh,
            in_specs=P("d"),
            out_specs=P("d"),
        )
    )(h)
    np.testing.assert_array_equal(sharded[0], xy)

    # DARK starts from the native argmax: the same as from XLA's.
    def dark_via_xla(m):
        x, y, _, centre = A._xla_decode(m, "dark")
        return centre + A._dark(m, x, y, None)

    np.testing.assert_array_equal(heatmap_argmax(h, refine="dark")[0], jax.jit(dark_via_xla)(h))


@pytest.fixture
def fresh_loader(monkeypatch):
    """``cpu_target`` with its per-process cache cleared before and after the test."""
    loader.cpu_target.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    loader.cpu_target.cache_clear()


def test_disabled_or_no_compiler_falls_back_to_xla_with_equal_results(fresh_loader):
    h = np.random.default_rng(3).integers(0, 3, (2, 5, 6, 4)).astype(np.float32)
    fresh_loader.setenv("JAXVISION_NATIVE", "0")
    assert loader.cpu_target("heatmap_argmax") is None
    f = jax.jit(lambda m: heatmap_argmax(m, refine="quarter"))
    assert "jaxvision_heatmap_argmax" not in f.lower(h).as_text()
    xy, score = f(h)
    loader.cpu_target.cache_clear()
    fresh_loader.setenv("JAXVISION_NATIVE", "1")
    fresh_loader.setenv("CXX", "/nonexistent/c++")
    with pytest.warns(RuntimeWarning, match="not available.*XLA path"):
        assert loader.cpu_target("heatmap_argmax") is None
    if TARGET is not None:
        np.testing.assert_array_equal(heatmap_argmax(h, refine="quarter")[0], xy)
    np.testing.assert_array_equal(score, h.max(axis=(1, 2)))


@needs_kernel
def test_a_damaged_cached_library_is_rebuilt(fresh_loader, tmp_path):
    _, _, built = loader._library_path("heatmap_argmax")  # the one this process loaded
    fresh_loader.setenv("JAXVISION_CACHE_DIR", str(tmp_path))
    _, _, path = loader._library_path("heatmap_argmax")
    assert path.parent == tmp_path and path.name == built.name
    path.write_bytes(built.read_bytes()[:100])  # truncated, as by a full disk
    path.with_suffix(".sha256").write_text(built.with_suffix(".sha256").read_text())
    assert not loader._intact(path)
    library = loader._load("heatmap_argmax")  # rebuilt, then loaded
    assert library.JaxvisionHeatmapArgmax and loader._intact(path)
    assert path.stat().st_size > 1000  # a whole library again
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".sha256", ".so"]  # no temporaries


def test_xla_path_flags_a_nan_its_max_reduction_drops():
    # XLA's CPU max over this batch's columns returned a finite maximum for the row holding
    # the NaN; the XLA path (other devices, JAXVISION_NATIVE=0) must still flag the map.
    h = np.random.default_rng(5).uniform(size=(2, 50, 48, 17)).astype(np.float32)
    h[0, 45, 3, 4] = np.nan
    x, y, peak, xy = (np.asarray(a) for a in jax.jit(lambda m: A._xla_decode(m, "quarter"))(h))
    assert (x[0, 4], y[0, 4]) == (47, 49) and np.isnan(peak[0, 4])
    assert np.array_equal(xy[0, 4], [47.5, 49.5])  # the last pixel's centre, no offset
    others = np.ones(x.shape, bool)
    others[0, 4] = False
    assert np.isfinite(peak[others]).all()
    flat = np.moveaxis(h, -1, 1).reshape(2, 17, -1)
    idx = flat.argmax(-1)
    assert np.array_equal(x[others], (idx % 48)[others]) and np.array_equal(
        y[others], (idx // 48)[others]
    )
