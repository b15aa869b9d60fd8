# Spatial pyramid pooling, included by _pool.pyx. Every bin of every level is a window of
# its own size and place, so each gets an fc_pool_window of its own (all their tables in
# one allocation) and the max, mean and mean-gradient row kernels run on it as an output
# row of one pixel. Forward passes split the work by (image, bin), each output written by
# one task; the mean's gradient by image, bins in order (bins may overlap). The max's
# gradient is max_pool2d_backward on the (N, 1, bins, C) view of dy and argmax.


ctypedef struct _pyramid_bins:
    Py_ssize_t n                # bins
    fc_pool_window *window      # bin b's window in an image of W x C
    Py_ssize_t *origin          # flat in-image index top * W + left of bin b's first element
    Py_ssize_t *offset          # the windows' tables, one after the other
    int64_t *rel
    int32_t *rel32


cdef int _bins_init(_pyramid_bins *bins, const int64_t[:, ::1] edges, Py_ssize_t W,
                    Py_ssize_t C) except -1:
    """The windows of the bins edges[b] = (top, bottom, left, right), ends exclusive."""
    cdef Py_ssize_t b, i, j, bh, bw, k = 0, total = 0
    cdef fc_pool_window *window
    bins.n = edges.shape[0]
    for b in range(bins.n):
        total += (edges[b, 1] - edges[b, 0]) * (edges[b, 3] - edges[b, 2])
    bins.window = <fc_pool_window *> malloc(bins.n * sizeof(fc_pool_window))
    bins.origin = <Py_ssize_t *> malloc(bins.n * sizeof(Py_ssize_t))
    bins.offset = <Py_ssize_t *> malloc(total * sizeof(Py_ssize_t))
    bins.rel = <int64_t *> malloc(total * sizeof(int64_t))
    bins.rel32 = <int32_t *> malloc(total * sizeof(int32_t))
    if (bins.window == NULL or bins.origin == NULL or bins.offset == NULL
            or bins.rel == NULL or bins.rel32 == NULL):
        _bins_free(bins)
        raise MemoryError()
    for b in range(bins.n):
        bh = edges[b, 1] - edges[b, 0]
        bw = edges[b, 3] - edges[b, 2]
        bins.origin[b] = edges[b, 0] * W + edges[b, 2]
        window = &bins.window[b]
        window.n = bh * bw
        window.offset = bins.offset + k
        window.rel = bins.rel + k
        window.rel32 = bins.rel32 + k
        window.rel32_fits = (bh - 1) * W + bw - 1 <= INT32_MAX
        for i in range(bh):
            for j in range(bw):
                bins.offset[k] = (i * W + j) * C
                bins.rel[k] = i * W + j
                bins.rel32[k] = <int32_t> bins.rel[k]
                k += 1
    return 0


cdef void _bins_free(_pyramid_bins *bins) noexcept:
    free(bins.window)
    free(bins.origin)
    free(bins.offset)
    free(bins.rel)
    free(bins.rel32)
    bins.window = NULL
    bins.origin = NULL
    bins.offset = NULL
    bins.rel = NULL
    bins.rel32 = NULL


def pyramid_max_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    const int64_t[:, ::1] bins,           # IN (B, 4): top, bottom, left, right; ends exclusive
    floating[:, :, ::1] y,                # OUT (N, B, C)
    int64_t[:, :, ::1] argmax,            # OUT (N, B, C), flat ih * W + iw
    int n_threads, int isa=-1,
):
    """y[n, b] = max of x[n, top:bottom, left:right] per channel, argmax its flat index.

    Ties and NaN as in :func:`max_pool2d_forward`: the first maximum in row-major bin
    order; a bin holding NaN gives NaN and the index of its first NaN.
    """
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t n_bins = bins.shape[0]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t task, n, b
        const floating *xbase
        floating *ybase
        int64_t *abase
        _pyramid_bins table
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images == 0 or n_bins == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0]
    abase = &argmax[0, 0, 0]
    _bins_init(&table, bins, W, C)
    try:
        for task in prange(n_images * n_bins, schedule="static", nogil=True,
                           num_threads=n_threads):
            n = task // n_bins
            b = task % n_bins
            if floating is float:
                k32.max_row(xbase + n * image_size + table.origin[b] * C, C, 1, 0,
                            &table.window[b], NULL, ybase + task * C, abase + task * C,
                            table.origin[b])
            else:
                k64.max_row(xbase + n * image_size + table.origin[b] * C, C, 1, 0,
                            &table.window[b], NULL, ybase + task * C, abase + task * C,
                            table.origin[b])
    finally:
        _bins_free(&table)


def pyramid_avg_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    const int64_t[:, ::1] bins,           # IN (B, 4): top, bottom, left, right; ends exclusive
    floating[:, :, ::1] y,                # OUT (N, B, C)
    int n_threads, int isa=-1,
):
    """y[n, b] = mean of x[n, top:bottom, left:right] per channel."""
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t n_bins = bins.shape[0]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t task, n, b
        const floating *xbase
        floating *ybase
        _pyramid_bins table
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images == 0 or n_bins == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0]
    _bins_init(&table, bins, W, C)
    try:
        for task in prange(n_images * n_bins, schedule="static", nogil=True,
                           num_threads=n_threads):
            n = task // n_bins
            b = task % n_bins
            if floating is float:
                k32.avg_row(xbase + n * image_size + table.origin[b] * C, C, 1, 0,
                            &table.window[b], <float> table.window[b].n, ybase + task * C)
            else:
                k64.avg_row(xbase + n * image_size + table.origin[b] * C, C, 1, 0,
                            &table.window[b], <double> table.window[b].n, ybase + task * C)
    finally:
        _bins_free(&table)


def pyramid_avg_backward(
    const floating[:, :, ::1] dy,         # IN (N, B, C)
    const int64_t[:, ::1] bins,           # IN (B, 4): top, bottom, left, right; ends exclusive
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int n_threads, int isa=-1,
):
    """dx = 0, then dy[n, b] / (bin b's size) is added to every element of bin b."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t n_bins = bins.shape[0]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t n, b
        floating *dxbase
        floating *dximg
        const floating *dybase
        _pyramid_bins table
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images == 0 or image_size == 0:
        return
    dxbase = &dx[0, 0, 0, 0]
    if n_bins == 0:
        memset(dxbase, 0, n_images * image_size * sizeof(floating))
        return
    dybase = &dy[0, 0, 0]
    _bins_init(&table, bins, W, C)
    try:
        for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
            dximg = dxbase + n * image_size
            memset(dximg, 0, image_size * sizeof(floating))
            # bins in order: where they overlap, the shares add up in a fixed order
            for b in range(n_bins):
                if floating is float:
                    k32.avg_backward_row(dximg + table.origin[b] * C, C, 1, 0,
                                         &table.window[b], <float> table.window[b].n,
                                         dybase + (n * n_bins + b) * C)
                else:
                    k64.avg_backward_row(dximg + table.origin[b] * C, C, 1, 0,
                                         &table.window[b], <double> table.window[b].n,
                                         dybase + (n * n_bins + b) * C)
    finally:
        _bins_free(&table)
