# Included by _conv.pyx: the compiled inference program (a whole prediction pass in one
# call).

cdef enum _OpKind:
    _OP_CONV = 0            # conv2d_forward
    _OP_CONV_POOL = 1       # conv2d_forward_pooled
    _OP_C1_MAX_POOL = 2     # conv2d_forward_c1_max_pool
    _OP_WINOGRAD = 3        # winograd_forward (pooled or not)
    _OP_GLOBAL_AVG = 4      # global average pooling
    _OP_CONV_SLICES = 5     # a 1x1 conv2d_forward over slices of the input channels
    _OP_C1 = 6              # expand_channels, then conv2d_forward_c1
    _OP_POOL = 7            # max_pool2d_values_forward or avg_pool2d_forward

# the fields of _ConvArgs, which an op's dict sets (the others 0)
_ARG_FIELDS = ("n_images", "H", "W", "C", "xs0", "xs1", "xs2", "Ho", "Wo", "K", "Hp", "Wp",
               "n_kblocks", "w_last", "kernel_h", "kernel_w", "stride_h", "stride_w",
               "pad_top", "pad_bottom", "pad_left", "pad_right", "dilation_h", "dilation_w",
               "relu", "average", "weights_outer", "accumulate", "isa", "nv", "block",
               "group", "tile", "alpha", "pool")

OP_KINDS = {"conv": _OP_CONV, "conv_pool": _OP_CONV_POOL, "c1_max_pool": _OP_C1_MAX_POOL,
            "winograd": _OP_WINOGRAD, "global_avg": _OP_GLOBAL_AVG,
            "conv_slices": _OP_CONV_SLICES, "c1": _OP_C1, "pool": _OP_POOL}


cdef struct _Op:
    _OpKind kind
    _ConvArgs a             # its arguments for one image (n_images set per call)
    bint rows               # a dense layer: the batch is one image's row (W = Wo = count)
    void *w                 # the prepared weights and bias
    void *b
    Py_ssize_t in_len, out_len   # values per image (sample) in and out
    Py_ssize_t work         # 16x the vector work per image (ConvPlan.vector_work)
    # in slices: their width, count and row length (ConvPlan.slices)
    Py_ssize_t slice_width, n_slices, slice_row
    # a single input channel: the expanded rows' length, and the row patterns'
    Py_ssize_t expanded_row, pattern_len


cdef int _op_threads(const _Op *op, Py_ssize_t count, int n_threads, Py_ssize_t grain) noexcept nogil:
    """ConvPlan.threads (resolve_threads) for ``count`` images of this op."""
    cdef Py_ssize_t fit = (count * op.work // 16) // grain
    return <int> max(1, min(<Py_ssize_t> n_threads, fit))


cdef inline Py_ssize_t _op_scratch(const _Op *op) noexcept nogil:
    """Values of scratch an op needs per image: its slices of x, or its expanded rows."""
    if op.kind == _OP_CONV_SLICES:
        return op.n_slices * op.slice_row * op.a.H * op.a.W
    if op.kind == _OP_C1:
        return (op.a.pad_top + op.a.H + op.a.pad_bottom) * op.expanded_row
    return 0


cdef int _slices_run(const _Op *op, const floating *x, floating *y, floating *scratch,
                     Py_ssize_t count, int n_threads) noexcept nogil:
    """ConvPlan._forward_in_slices: each slice of x's channels copied out (a row of
    ``slice_row`` values a pixel), then conv2d_forward of it added onto the slices' before
    it, in order, the relu with the last."""
    cdef _ConvArgs a = op.a
    cdef Py_ssize_t n_pixels = count * a.H * a.W, C = a.C, K = a.K, row = op.slice_row
    cdef Py_ssize_t j, p, first, width
    cdef floating *slice
    cdef int status
    for j in range(op.n_slices):
        first = j * op.slice_width
        width = min(C, first + op.slice_width) - first
        slice = scratch + j * n_pixels * row
        for p in range(n_pixels):
            memcpy(slice + p * row, x + p * C + first, width * sizeof(floating))
        a.n_images, a.H, a.W, a.C, a.Ho, a.Wo = 1, 1, n_pixels, width, 1, n_pixels
        a.xs0 = a.xs1 = n_pixels * row
        a.xs2 = row
        a.relu = op.a.relu and j == op.n_slices - 1
        a.accumulate = j > 0
        status = _forward_run(&a, slice, <const floating *> op.w + first * K,
                              <const floating *> op.b, y, n_threads)
        if status:
            return status
    return 0


cdef int _op_run(const _Op *op, const floating *x, floating *y, floating *scratch,
                 Py_ssize_t count, int n_threads, Py_ssize_t grain) noexcept nogil:
    """One op over ``count`` images (samples) from x into y (``scratch``: at least
    _op_scratch values an image): 0, or a driver's error."""
    cdef _ConvArgs a = op.a
    cdef int threads = _op_threads(op, count, n_threads, grain)
    cdef Py_ssize_t hp
    if op.kind == _OP_CONV_SLICES:
        return _slices_run(op, x, y, scratch, count, threads)
    if op.rows:
        a.n_images, a.W, a.Wo = 1, count, count
        a.xs0 = a.xs1 = count * a.C
    else:
        a.n_images = count
    if op.kind == _OP_CONV:
        return _forward_run(&a, x, <const floating *> op.w, <const floating *> op.b, y, threads)
    if op.kind == _OP_CONV_POOL:
        return _forward_pooled_run(&a, x, <const floating *> op.w, <const floating *> op.b, y,
                                   threads)
    if op.kind == _OP_C1_MAX_POOL:
        return _c1_max_pool_run(&a, x, <const floating *> op.w, <const floating *> op.b, y,
                                threads)
    if op.kind == _OP_WINOGRAD:
        return _winograd_run(&a, x, <const floating *> op.w, <const floating *> op.b, y,
                             threads)
    if op.kind == _OP_C1:
        hp = a.pad_top + a.H + a.pad_bottom
        _expand_run(x, scratch, count, a.H, a.W, hp, op.expanded_row, a.pad_top, a.pad_left,
                    a.K, a.isa, threads)
        return _c1_forward_run(<const floating *> scratch, hp, op.expanded_row,
                               <const floating *> op.w, op.pattern_len,
                               <const floating *> op.b, y, count, a.Ho, a.Wo, a.K,
                               a.kernel_h, a.kernel_w, a.stride_h, a.dilation_h, a.dilation_w,
                               a.relu, a.isa, threads)
    if op.kind == _OP_POOL:
        return _pool_values_images(x, y, count, a.H, a.W, a.C, a.Ho, a.Wo, a.kernel_h,
                                   a.kernel_w, a.stride_h, a.stride_w, a.average, a.isa,
                                   threads)
    _global_avg_images(x, y, count, a.H * a.W, a.C, a.isa, threads)
    return 0


cdef int _program_run(const _Op *ops, int n_ops, int n_image_ops, const floating *images,
                      floating *out, floating *buffer, Py_ssize_t n, Py_ssize_t chunk,
                      Py_ssize_t flat_chunk, Py_ssize_t ping_len, Py_ssize_t scratch_len,
                      int n_threads, Py_ssize_t grain) noexcept nogil:
    """The ops over n images, as InferencePlan.run runs its steps: groups of ``flat_chunk``
    images, their image ops in chunks of ``chunk`` images into the group's flat rows, then
    the flat ops over the whole group; every op out of place, between two buffers of
    ``ping_len`` values in ``buffer``, then the ops' scratch (``scratch_len`` values),
    then the flat rows."""
    cdef:
        floating *ping[2]
        floating *scratch = buffer + 2 * ping_len
        floating *flat = scratch + scratch_len
        const floating *src
        floating *dst
        Py_ssize_t first, last, begin, end
        int i, status
        int n_flat_ops = n_ops - n_image_ops
        Py_ssize_t flat_len = ops[n_image_ops - 1].out_len if n_image_ops else ops[0].in_len
        Py_ssize_t out_len = ops[n_ops - 1].out_len
    ping[0], ping[1] = buffer, buffer + ping_len
    first = 0
    while first < n:
        last = min(n, first + flat_chunk)
        if n_image_ops == 0:
            src = images + first * flat_len
        else:
            begin = first
            while begin < last:
                end = min(last, begin + chunk)
                src = images + begin * ops[0].in_len
                for i in range(n_image_ops):
                    if i < n_image_ops - 1:
                        dst = ping[i % 2]
                    elif n_flat_ops:
                        dst = flat + (begin - first) * flat_len
                    else:
                        dst = out + begin * out_len
                    status = _op_run(&ops[i], src, dst, scratch, end - begin, n_threads,
                                     grain)
                    if status:
                        return status
                    src = dst
                begin = end
            src = flat
        for i in range(n_image_ops, n_ops):
            dst = out + first * out_len if i == n_ops - 1 else ping[(i - n_image_ops) % 2]
            status = _op_run(&ops[i], src, dst, scratch, last - first, n_threads, grain)
            if status:
                return status
            src = dst
        first = last
    return 0


cdef class Program:
    """A prediction pass compiled into one call: the ops (dicts made by the plans, see
    ``fastcnn.nn.inference``) run in C, with no Python between them.

    ``ops``: the image ops, then the flat ones (``n_image_ops`` of them first); each a
    dict with its kind (a key of OP_KINDS), its weights and bias (arrays of the program's
    dtype, kept alive here), values per image in and out, its work and the fields of its
    arguments (``_ConvArgs``) that apply."""

    cdef _Op *ops
    cdef int n_ops, n_image_ops
    cdef readonly object dtype
    cdef list arrays
    # the buffer's parts (_size) for the chunks of the last call
    cdef Py_ssize_t sized_chunk, sized_flat_chunk, ping_len, scratch_len, total_len

    def __cinit__(self):
        self.ops = NULL
        self.sized_chunk = self.sized_flat_chunk = 0

    def __init__(self, list ops, int n_image_ops, dtype):
        cdef int i
        cdef _Op *op
        cdef object array
        if not ops or not 0 <= n_image_ops <= len(ops):
            raise ValueError(f"a program needs ops, and 0 to {len(ops)} image ops, not "
                             f"{n_image_ops}")
        self.dtype = dtype
        if self.dtype.itemsize not in (4, 8):
            raise ValueError(f"a program runs float32 or float64, not {self.dtype}")
        self.n_ops, self.n_image_ops = len(ops), n_image_ops
        self.ops = <_Op *> calloc(self.n_ops, sizeof(_Op))
        if self.ops == NULL:
            raise MemoryError()
        self.arrays = []
        for i, spec in enumerate(ops):
            op = &self.ops[i]
            spec = dict(spec)
            kind = spec.pop("kind", None)
            if kind not in OP_KINDS:
                raise ValueError(f"op {i}'s kind is {kind!r}, not one of {sorted(OP_KINDS)}")
            op.kind = OP_KINDS[kind]
            weights, bias = spec.pop("arrays", (None, None))
            for array in (weights, bias):
                if array is not None and (array.dtype != self.dtype
                                          or not array.flags.c_contiguous):
                    raise ValueError(f"op {i}'s arrays are not C-contiguous {self.dtype}")
                self.arrays.append(array)
            op.w = NULL if weights is None else <void *> <size_t> weights.ctypes.data
            op.b = NULL if bias is None else <void *> <size_t> bias.ctypes.data
            op.rows = spec.pop("rows", False)
            op.in_len = spec.pop("in_len")
            if i and op.in_len != self.ops[i - 1].out_len:
                raise ValueError(f"op {i} reads {op.in_len} values per image, but op {i - 1} "
                                 f"writes {self.ops[i - 1].out_len}")
            op.out_len = spec.pop("out_len")
            op.work = spec.pop("work")
            op.slice_width = spec.pop("slice_width", 0)
            op.n_slices = spec.pop("n_slices", 0)
            op.slice_row = spec.pop("slice_row", 0)
            op.expanded_row = spec.pop("expanded_row", 0)
            op.pattern_len = spec.pop("pattern_len", 0)
            unknown = set(spec) - set(_ARG_FIELDS)
            if unknown:
                raise ValueError(f"op {i} has fields {sorted(unknown)} that no kernel takes")
            args = dict.fromkeys(_ARG_FIELDS, 0)
            args.update(spec)
            op.a = args
            # C-contiguous input
            op.a.xs2 = op.a.C
            op.a.xs1 = op.a.W * op.a.C
            op.a.xs0 = op.a.H * op.a.W * op.a.C

    def __dealloc__(self):
        free(self.ops)

    cdef void _size(self, Py_ssize_t chunk, Py_ssize_t flat_chunk):
        """The buffer's parts for these chunks (kept for the next call with the same):
        the values in each of the two buffers between ops, the ops' scratch, and in all,
        with the flat rows (at least 1)."""
        cdef Py_ssize_t i, count, ping = 0, scratch = 0, flat = 0
        if chunk == self.sized_chunk and flat_chunk == self.sized_flat_chunk:
            return
        for i in range(self.n_ops):
            count = chunk if i < self.n_image_ops else flat_chunk
            if i != self.n_ops - 1 and i != self.n_image_ops - 1:
                ping = max(ping, self.ops[i].out_len * count)
            scratch = max(scratch, _op_scratch(&self.ops[i]) * count)
        if 0 < self.n_image_ops < self.n_ops:
            flat = self.ops[self.n_image_ops - 1].out_len * flat_chunk
        self.ping_len, self.scratch_len = ping, scratch
        self.total_len = max(1, 2 * ping + scratch + flat)
        self.sized_chunk, self.sized_flat_chunk = chunk, flat_chunk

    def buffer_len(self, Py_ssize_t chunk, Py_ssize_t flat_chunk):
        """Values :meth:`run` needs in its buffer for these chunks (at least 1)."""
        self._size(chunk, flat_chunk)
        return self.total_len

    def run(self, const floating[:, ::1] images, floating[:, ::1] out,
            floating[::1] buffer, Py_ssize_t chunk, Py_ssize_t flat_chunk, int n_threads,
            Py_ssize_t grain):
        """out = the ops over ``images`` (N, values per image), both C-contiguous of the
        program's dtype, the image ops in chunks of ``chunk`` images and the flat ones in
        groups of ``flat_chunk`` (at least ``chunk``), as InferencePlan.run runs its
        steps; ``buffer`` (at least :meth:`buffer_len` values) is the calling thread's own.
        ``grain``: fastcnn.ops.threads.grain()."""
        cdef Py_ssize_t n = images.shape[0], ping_len, scratch_len
        cdef int status
        if chunk < 1 or flat_chunk < chunk:
            raise ValueError(f"chunks of {chunk} and {flat_chunk} images: the first at "
                             f"least 1, the second at least the first")
        self._size(chunk, flat_chunk)   # (under the GIL: no other thread runs it meanwhile)
        if sizeof(floating) != self.dtype.itemsize:
            raise ValueError(f"the program runs {self.dtype}, not {images.base.dtype}")
        if (images.shape[1] != self.ops[0].in_len or out.shape[0] != n
                or out.shape[1] != self.ops[self.n_ops - 1].out_len
                or buffer.shape[0] < self.total_len):
            raise ValueError("the program's images, output or buffer have the wrong size")
        if n == 0:
            return
        ping_len, scratch_len = self.ping_len, self.scratch_len
        with nogil:
            status = _program_run(self.ops, self.n_ops, self.n_image_ops, &images[0, 0],
                                  &out[0, 0], &buffer[0], n, chunk, flat_chunk,
                                  ping_len, scratch_len, n_threads, max(1, grain))
        if status == -2:
            raise ValueError("a pooled convolution of the program cannot tile its rows")
        if status:
            raise MemoryError()
