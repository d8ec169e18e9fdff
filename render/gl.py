"""Headless OpenGL (EGL) setup for pyrender.

pyrender chooses its OpenGL platform from ``PYOPENGL_PLATFORM`` when it is first
imported, so :func:`import_pyrender` sets ``PYOPENGL_PLATFORM=egl`` (unless the user
already chose a platform) *before* importing it. On CPU machines EGL runs Mesa's
software rasteriser (llvmpipe); on GPU machines the NVIDIA driver.

A machine without the GL libraries gets :class:`GLUnavailableError`, which names the
Debian packages to install, instead of a traceback from deep inside PyOpenGL.
"""
from __future__ import annotations

import os

#: Debian/Ubuntu packages that provide headless EGL rendering (same list as the Makefile).
GL_PACKAGES = ("libegl1", "libgl1", "libegl-mesa0", "libgl1-mesa-dri")
INSTALL_HINT = "sudo apt-get install -y " + " ".join(GL_PACKAGES)


class GLUnavailableError(RuntimeError):
    """Headless OpenGL could not be initialised (missing libraries or no usable EGL device)."""


def _explain(stage: str, exc: BaseException) -> GLUnavailableError:
    platform = os.environ.get("PYOPENGL_PLATFORM", "")
    return GLUnavailableError(
        f"headless OpenGL rendering is unavailable ({stage} failed with PYOPENGL_PLATFORM={platform!r}: "
        f"{type(exc).__name__}: {exc}). Install the EGL/GL libraries with:  {INSTALL_HINT}"
    )


def import_pyrender():
    """Return the ``pyrender`` module, imported with the EGL platform unless the user chose another."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import pyrender  # noqa: PLC0415 - must follow the environment setup above
    except (ImportError, OSError, AttributeError, RuntimeError) as exc:
        raise _explain("importing pyrender/PyOpenGL", exc) from exc
    return pyrender


def offscreen_renderer(width: int, height: int):
    """Create a ``pyrender.OffscreenRenderer``; raise :class:`GLUnavailableError` if EGL cannot start."""
    pyrender = import_pyrender()
    try:
        return pyrender.OffscreenRenderer(width, height)
    except Exception as exc:  # EGL reports missing drivers as assorted errors
        raise _explain("creating an EGL context", exc) from exc


def llvmpipe_threads(processes: int) -> int:
    """``LP_NUM_THREADS`` for each of ``processes`` rendering at once with llvmpipe (no effect on a GPU driver).

    With at least as many rendering processes as cores, 0: each rasterises in its own thread. A
    separate raster thread per process then adds only hand-offs between two threads that never run
    at once (the bare loops of ``benchmarks/bench_render.py`` use the same setting as the pipeline).
    With fewer processes than cores, the cores each process may use, so the rasteriser uses the idle ones.
    """
    cores = os.cpu_count() or 1
    return 0 if processes >= cores else cores // processes
