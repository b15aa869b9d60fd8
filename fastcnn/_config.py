"""What this build of fastcnn runs with: OpenMP, threads and the SIMD path."""
import platform

from ._version import __version__
from .ops.conv import cpu_isa, isa_name
from .ops.threads import effective_n_threads, openmp_enabled


def _config():
    return {
        "version": __version__,
        "openmp": openmp_enabled(),
        "threads": effective_n_threads(None),
        "simd": isa_name(cpu_isa()),
        "machine": platform.machine(),
    }


def config_summary():
    """One line: version, OpenMP, default thread count and SIMD path."""
    c = _config()
    openmp = "OpenMP on" if c["openmp"] else "OpenMP OFF (serial build)"
    return f"fastcnn {c['version']}, {openmp}, {c['threads']} thread(s), SIMD {c['simd']}"


def show_config():
    """Print how this build of fastcnn runs: OpenMP, threads, SIMD path.

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.show_config()  # doctest: +SKIP
    fastcnn 0.2.0
      OpenMP:     enabled
      threads:    2 (n_threads=None)
      SIMD path:  AVX-512
      machine:    x86_64
    """
    c = _config()
    print(f"fastcnn {c['version']}")
    print(f"  OpenMP:     {'enabled' if c['openmp'] else 'disabled: serial build'}")
    print(f"  threads:    {c['threads']} (n_threads=None)")
    print(f"  SIMD path:  {c['simd']}")
    print(f"  machine:    {c['machine']}")
