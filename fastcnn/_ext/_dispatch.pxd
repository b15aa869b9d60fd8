# The instruction-set choice shared by the kernel families (see _dispatch.h).
cdef extern from "_dispatch.h" nogil:
    int fc_cpu_isa()


cdef inline int resolve_isa(int isa, int detected) except -1:
    """The instruction set a driver runs: ``detected`` for -1, else ``isa`` if this CPU
    has it (running instructions it lacks would kill the process)."""
    if isa == -1:
        return detected
    if isa < 0 or isa > detected:
        raise ValueError(
            f"isa={isa} is not available on this CPU: use -1 (the best, {detected}) or an "
            f"integer from 0 (baseline) to {detected}")
    return isa
