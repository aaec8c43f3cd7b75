"""Native CPU kernels: C++ XLA FFI handlers compiled on first use, with the XLA path as fallback.

A kernel is one ``<name>.cc`` file next to this module. ``cpu_target(name)`` compiles it
with the machine's C++ compiler (``$CXX``, else ``c++`` / ``g++`` / ``clang++``) for this
CPU (``-O3 -march=native``), loads the shared library, registers its handler with XLA under
``jaxvision_<name>`` for the CPU platform and returns that target name; or returns ``None``
when no kernel can be had (no compiler, a failed compile, ``JAXVISION_NATIVE=0``), and the
caller lowers its XLA path instead, which computes the same results. It never raises.

The library is cached under ``$JAXVISION_CACHE_DIR`` (default ``~/.cache/jaxvision``),
keyed by the source, the compiler's version, the flags, jaxlib's version and the CPU, so a
second process loads it without compiling (about 3 s once per machine). Each library has
its SHA-256 beside it; a cached library that does not match it (truncated, overwritten) or
fails to load is rebuilt. Writes are atomic (a temporary file renamed into place), so
concurrent processes never load a partial file.

The handlers use XLA's typed FFI (``xla/ffi/api/ffi.h`` from jaxlib's headers): they read
their input buffers and write their results, nothing else, so calls stay pure under jit,
vmap and shard_map.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jaxlib

from jaxvision._src.jax_compat import varying_axes

_HERE = Path(__file__).parent
_LOCK = threading.Lock()
_LIBRARIES: dict[str, ctypes.CDLL] = {}  # kept alive: XLA calls into them
_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-w", "-fno-math-errno")


def _compiler() -> str | None:
    """The C++ compiler to use: ``$CXX`` if set, else the first of c++, g++, clang++."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    for name in ("c++", "g++", "clang++"):
        if path := shutil.which(name):
            return path
    return None


def _cache_dir() -> Path:
    """``$JAXVISION_CACHE_DIR``, else ``~/.cache/jaxvision`` where it can be written, else a
    per-user folder in the temporary directory."""
    if os.environ.get("JAXVISION_CACHE_DIR"):
        return Path(os.environ["JAXVISION_CACHE_DIR"])
    home = Path.home() / ".cache" / "jaxvision"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"jaxvision-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the machine and its CPU's feature flags."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {flags}"


def _version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(path: Path) -> bool:
    """The library exists and matches the checksum written when it was built."""
    stamp = path.with_suffix(".sha256")
    try:
        return stamp.read_text().strip() == _digest(path)
    except OSError:
        return False


def _build(source: Path, cxx: str, out: Path) -> None:
    """Compiles ``source`` into ``out`` atomically, then its checksum beside it; tries
    without ``-march=native`` too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    include = jax.ffi.include_dir()
    errors = []
    for arch in (("-march=native",), ()):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        cmd = [cxx, *_FLAGS, *arch, f"-I{include}", f"-I{_HERE}", str(source), "-o", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            stamp = Path(tmp).with_suffix(".sha256")
            stamp.write_text(_digest(Path(tmp)))
            os.replace(tmp, out)
            os.replace(stamp, out.with_suffix(".sha256"))
            return
        os.unlink(tmp)
        errors.append(result.stderr[-2000:])
    raise RuntimeError("\n".join(errors))


def _library_path(name: str) -> tuple[Path, str, Path]:
    """``(source, compiler, cached library)`` of kernel ``name``."""
    source = _HERE / f"{name}.cc"
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set $CXX)")
    key = hashlib.sha256(
        "\0".join(
            [
                source.read_text(),
                *(header.read_text() for header in sorted(_HERE.glob("*.h"))),
                cxx,
                _version(cxx),
                " ".join(_FLAGS),
                jaxlib.__version__,
                _cpu_id(),
            ]
        ).encode()
    ).hexdigest()[:16]
    return source, cxx, _cache_dir() / f"{name}-{key}.so"


def _load(name: str) -> ctypes.CDLL:
    source, cxx, path = _library_path(name)
    if not _intact(path):  # missing, or damaged (truncated by a full disk, overwritten)
        _build(source, cxx, path)
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        # Intact but not loadable here (another libc, say): rebuild it once.
        _build(source, cxx, path)
        return ctypes.CDLL(str(path))


@functools.cache
def cpu_target(name: str) -> str | None:
    """The registered FFI target of kernel ``name`` on the CPU, or None (use the XLA path).

    None also where the default backend is not the CPU: a GPU or TPU process compiles no C++.

    The handler symbol is ``Jaxvision`` + the kernel name in CamelCase
    (``heatmap_argmax`` -> ``JaxvisionHeatmapArgmax``).
    """
    if os.environ.get("JAXVISION_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if jax.default_backend() != "cpu":  # GPU / TPU processes lower their own path
        return None
    target = f"jaxvision_{name}"
    symbol = "Jaxvision" + "".join(part.capitalize() for part in name.split("_"))
    with _LOCK:
        try:
            library = _load(name)
            handler = getattr(library, symbol)
        except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as error:
            warnings.warn(
                f"jaxvision: the native CPU kernel {name!r} is not available ({error}); "
                "the XLA path is used instead (same results, slower on the CPU).",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        _LIBRARIES[name] = library
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform="cpu")
    return target


def call_kernel(
    target: str, result_types: tuple[jax.ShapeDtypeStruct, ...], *args: jax.Array, **attributes
) -> tuple[jax.Array, ...]:
    """Calls a registered kernel: leading axes are a batch under ``vmap``, and inside
    ``shard_map`` the results vary over the same mesh axes as ``args[0]`` (an FFI call's
    results vary over none)."""
    call = jax.ffi.ffi_call(target, result_types, vmap_method="broadcast_all")
    results = tuple(call(*args, **attributes))
    axes = tuple(sorted(varying_axes(args[0])))
    if axes:
        results = tuple(jax.lax.pcast(r, axes, to="varying") for r in results)
    return results
