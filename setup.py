"""Build the Cython extensions of fastcnn.

Environment switches (all optional):

FASTCNN_DEBUG=1      Cython bounds/wraparound checks on, ``-O0 -g``: for memory-safety testing.
FASTCNN_NATIVE=1     add ``-march=native`` (the default build is portable and dispatches
                     to AVX-512 / AVX2 micro-kernels at run time).
FASTCNN_NO_OPENMP=1  build serially even when the compiler supports OpenMP.
FASTCNN_SANITIZE=address
                     build with AddressSanitizer (run Python with the ASan runtime preloaded,
                     LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0).
"""
import glob
import os
import sys
import tempfile
import textwrap
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

EXTENSIONS = ["_openmp", "_conv", "_pool", "_activations", "_optim", "_batchnorm", "_depthwise"]


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _openmp_flags():
    """Compile and link a tiny OpenMP program; return the flags that made it work."""
    if _env_flag("FASTCNN_NO_OPENMP"):
        return None
    flags = ["/openmp"] if sys.platform == "win32" else ["-fopenmp"]
    source = textwrap.dedent(
        """\
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return n > 0 ? 0 : 1;
        }
        """
    )
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "check_openmp.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(
                objects, os.path.join(tmp, "check_openmp"), extra_postargs=flags
            )
        except (CompileError, LinkError):
            return None
    return flags


def _build_mode_changed(debug):
    stamp = os.path.join("build", "fastcnn-build-mode")
    mode = ("debug" if debug else "release") + os.environ.get("FASTCNN_SANITIZE", "")
    previous = open(stamp).read() if os.path.exists(stamp) else None
    os.makedirs("build", exist_ok=True)
    with open(stamp, "w") as f:
        f.write(mode)
    return previous != mode


def _extensions():
    debug = _env_flag("FASTCNN_DEBUG")
    openmp = _openmp_flags()
    if openmp is None:
        warnings.warn(
            "fastcnn: the C compiler has no usable OpenMP support (or FASTCNN_NO_OPENMP is "
            "set); building serial kernels. Install a compiler with OpenMP (gcc, or clang "
            "with libomp) for multithreading.",
            stacklevel=1,
        )
    compile_args = ["-O0", "-g"] if debug else ["-O3"]
    compile_args += ["-fno-math-errno", "-Wno-unused-function"]
    if _env_flag("FASTCNN_NATIVE"):
        compile_args.append("-march=native")
    compile_args += openmp or []
    link_args = list(openmp or [])
    if debug:
        link_args.append("-g")
    sanitizer = os.environ.get("FASTCNN_SANITIZE", "").strip()
    if sanitizer:
        flags = [f"-fsanitize={sanitizer}", "-fno-omit-frame-pointer"]
        compile_args += flags
        link_args += flags
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
    extensions = [
        Extension(
            f"fastcnn._ext.{name}",
            [f"fastcnn/_ext/{name}.pyx"],
            include_dirs=[numpy.get_include(), "fastcnn/_ext"],
            # rebuild when a C header changes (cythonize does not follow nested includes)
            depends=sorted(glob.glob("fastcnn/_ext/*.h")),
            define_macros=macros,
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
        for name in EXTENSIONS
    ]
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": not debug,
        "nonecheck": debug,
        "embedsignature": True,
    }
    return cythonize(
        extensions,
        compiler_directives=directives,
        compile_time_env={"FASTCNN_DEBUG": debug},
        # The generated C depends on the debug switch: regenerate when it flips.
        force=_build_mode_changed(debug),
    )


setup(ext_modules=_extensions())
