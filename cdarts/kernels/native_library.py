"""Build and load the C++ kernels in this folder, at run time, for the machine they run on.

A kernel is compiled once per (source, compiler, CPU) with ``-O3 -march=native -fopenmp`` into a
cache folder and loaded with ctypes; the OpenMP runtime it links is the ``libgomp.so.1`` torch
has already loaded, so both share one thread pool (callers import torch before they load a
kernel, as they must to have tensors to pass it). Anything that goes wrong (no compiler, a failed
build, an unwritable cache, ``CDARTS_NATIVE_KERNELS=0``) leaves the kernel unavailable, with one
log line, and callers keep PyTorch's own operators: the kernels change speed, never results.

Environment:
    CDARTS_NATIVE_KERNELS: ``0`` turns the kernels off.
    CDARTS_KERNEL_CACHE: the cache folder (default ``$XDG_CACHE_HOME/cdarts/kernels``, else
        ``~/.cache/cdarts/kernels``).
    CXX: the C++ compiler (default the first of ``c++`` and ``g++`` on PATH).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

_LOG = logging.getLogger(__name__)
KERNEL_DIR = Path(__file__).resolve().parent
COMPILE_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++17")
# gcc prefers 256-bit vectors on many AVX-512 CPUs; the kernels keep a 5x5 kernel's 25 partial
# sums of 16 channels in 512-bit registers (0.34 against 0.49 ms at (32, 16, 32, 32)).
X86_FLAGS = ("-mprefer-vector-width=512",)
COMPILE_TIMEOUT_S = 300


class NativeKernelError(RuntimeError):
    """The kernel could not be built or loaded here (the message says why)."""


def native_kernels_enabled() -> bool:
    """False when ``CDARTS_NATIVE_KERNELS`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get("CDARTS_NATIVE_KERNELS", "1").strip().lower() not in {"0", "false", "no", "off"}


def kernel_cache_dir() -> Path:
    """Where built kernels are kept (see the module docstring)."""
    configured = os.environ.get("CDARTS_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cdarts" / "kernels"


def _compiler() -> str:
    configured = os.environ.get("CXX")
    candidates = [configured] if configured else ["c++", "g++"]
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise NativeKernelError(f"no C++ compiler found (tried {', '.join(candidates)})")


def _cpu_fingerprint() -> str:
    """The CPU's feature flags: ``-march=native`` code is only reused on a CPU with the same ones."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compile_flags() -> tuple[str, ...]:
    """The compiler flags for this machine's architecture."""
    return COMPILE_FLAGS + (X86_FLAGS if platform.machine().lower() in {"x86_64", "amd64"} else ())


def _build_key(source: bytes, compiler: str) -> str:
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise NativeKernelError(f"cannot run {compiler}: {error}") from None
    digest = hashlib.sha256()
    for part in (source, version.encode(), " ".join(compile_flags()).encode(), _cpu_fingerprint().encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def build_library(name: str) -> Path:
    """Compile ``<name>.cpp`` of this folder (or reuse the cached build) -> the shared library."""
    source_path = KERNEL_DIR / f"{name}.cpp"
    source = source_path.read_bytes()
    compiler = _compiler()
    cache = kernel_cache_dir()
    target = cache / f"{name}-{_build_key(source, compiler)}.so"
    if target.exists():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed: concurrent builders never load half a file.
        handle, partial = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=cache)
        os.close(handle)
    except OSError as error:
        raise NativeKernelError(f"cannot write the kernel cache {cache}: {error}") from None
    try:
        result = subprocess.run(
            [compiler, *compile_flags(), str(source_path), "-o", partial],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
        )
        if result.returncode != 0:
            first_error = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
            raise NativeKernelError(f"{compiler} failed on {source_path.name}: {first_error[:300]}")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise NativeKernelError(f"{compiler} took over {COMPILE_TIMEOUT_S} s on {source_path.name}") from None
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


@functools.cache
def load_library(name: str) -> ctypes.CDLL | None:
    """The loaded kernel library ``name``, or None (logged once) where it is off or cannot be built."""
    if not native_kernels_enabled():
        return None
    try:
        return ctypes.CDLL(str(build_library(name)))
    except (NativeKernelError, OSError) as error:
        _LOG.warning("native kernel %s unavailable, using PyTorch's operators: %s", name, error)
        return None
