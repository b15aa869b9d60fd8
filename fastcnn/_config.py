"""What this build of fastcnn runs with: OpenMP, threads and the SIMD path."""
import platform

from ._version import __version__
from .ops import _bf16
from .ops.conv import cpu_isa, isa_name
from .ops.threads import effective_n_threads, openmp_enabled


def _config():
    return {
        "version": __version__,
        "openmp": openmp_enabled(),
        "threads": effective_n_threads(None),
        "simd": isa_name(cpu_isa()),
        "bfloat16": _bf16.available(),
        "machine": platform.machine(),
    }


def config_summary():
    """One line: version, OpenMP, default thread count and SIMD path."""
    c = _config()
    openmp = "OpenMP on" if c["openmp"] else "OpenMP OFF (serial build)"
    bf16 = "bf16 yes" if c["bfloat16"] else "bf16 no"
    return (f"fastcnn {c['version']}, {openmp}, {c['threads']} thread(s), SIMD {c['simd']}, "
            f"{bf16}")


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
      bfloat16:   available (AVX512_BF16)
      machine:    x86_64
    """
    c = _config()
    print(f"fastcnn {c['version']}")
    print(f"  OpenMP:     {'enabled' if c['openmp'] else 'disabled: serial build'}")
    print(f"  threads:    {c['threads']} (n_threads=None)")
    print(f"  SIMD path:  {c['simd']}")
    bf16 = ("available (AVX512_BF16)" if c["bfloat16"]
            else "unavailable: this CPU lacks AVX512_BF16, dtype='bfloat16' cannot run")
    print(f"  bfloat16:   {bf16}")
    print(f"  machine:    {c['machine']}")
