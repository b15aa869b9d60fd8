# Included by _conv.pyx: the weight gradient (one tile of dW per task) and the bias
# gradient (with the relu's backward pass fused).


cdef int _wgrad_tile_channels(int isa, int itemsize, int nv) except -1:
    """Input channels per weight-gradient tile at ``isa`` with ``nv`` vectors of outputs
    (the tables' tile_channels, indexed by nv: checked here for every caller)."""
    if nv != 1 and nv != 2:
        raise ValueError(f"nv must be 1 or 2 vectors of output channels, got {nv}")
    if itemsize == sizeof(float):
        return fc_conv_wgrad_table_f32_for(isa).tile_channels[nv - 1]
    return fc_conv_wgrad_table_f64_for(isa).tile_channels[nv - 1]


def wgrad_tile_channels(int isa, int itemsize, int nv):
    """Input channels per weight-gradient tile (the plan counts its tasks by them)."""
    return _wgrad_tile_channels(isa, itemsize, nv)


def conv2d_backward_weights(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, Kp), Kp a multiple of the block
    floating[:, :, :, :, ::1] partial,    # OUT (n_chunks, R, S, C, Kp)
    int stride_h, int stride_w,
    int pad_top, int pad_left,
    int dilation_h, int dilation_w,
    int block, int images_per_step, int isa, int nv, int n_threads,
):
    """partial[chunk, r, s, c, k] = sum over the chunk's images and the pixels of x * dy.

    Each task owns one (chunk, tap, channel tile, output-channel block) tile of
    ``partial`` and accumulates into it in place. The batch is walked a few images at a
    time (``images_per_step``), every task adding those images to its tile, so that the
    images' x and dy stay in cache while all the tiles use them. The reduction order is
    fixed by the data: the result does not depend on the thread count. The caller sums
    the chunks in index order.
    """
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2]
        Py_ssize_t C = x.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2], Kp = dy.shape[3]
        Py_ssize_t n_chunks = partial.shape[0]
        int kernel_h = partial.shape[1], kernel_w = partial.shape[2]
        Py_ssize_t n_ctiles, tile_channels
        Py_ssize_t n_kblocks = Kp // block
        Py_ssize_t chunk_len = (n_images + n_chunks - 1) // n_chunks
        Py_ssize_t tiles_per_chunk, n_tasks
        Py_ssize_t step, n_steps, task, rest, chunk, ctile, kblock, c, c0, k0
        Py_ssize_t n, n_first, n_end, oh, ih, ow_lo, ow_hi, num
        int r, s, tc, nrows
        const floating *xbase = &x[0, 0, 0, 0]
        const floating *dybase = &dy[0, 0, 0, 0]
        floating *pbase = &partial[0, 0, 0, 0, 0]
        const floating **xrows
        const floating **dyrows
        int *rowlen
        floating *tile
        const floating **all_xrows
        const floating **all_dyrows
        int *all_rowlen
        const fc_conv_wgrad_table_f32 *w32 = NULL
        const fc_conv_wgrad_table_f64 *w64 = NULL

    tile_channels = _wgrad_tile_channels(isa, sizeof(floating), nv)
    if floating is float:
        w32 = fc_conv_wgrad_table_f32_for(isa)
    else:
        w64 = fc_conv_wgrad_table_f64_for(isa)
    n_ctiles = (C + tile_channels - 1) // tile_channels
    tiles_per_chunk = kernel_h * kernel_w * n_ctiles * n_kblocks
    n_tasks = n_chunks * tiles_per_chunk
    if n_tasks == 0:
        return
    images_per_step = max(1, min(images_per_step, chunk_len))
    n_steps = (chunk_len + images_per_step - 1) // images_per_step
    all_xrows = <const floating **> malloc(
        n_threads * per_thread(images_per_step * Ho, sizeof(floating *)) * sizeof(floating *))
    all_dyrows = <const floating **> malloc(
        n_threads * per_thread(images_per_step * Ho, sizeof(floating *)) * sizeof(floating *))
    all_rowlen = <int *> malloc(
        n_threads * per_thread(images_per_step * Ho, sizeof(int)) * sizeof(int))
    try:
        if all_xrows == NULL or all_dyrows == NULL or all_rowlen == NULL:
            raise MemoryError()
        for step in range(n_steps):
            for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
                xrows = all_xrows + threadid() * per_thread(images_per_step * Ho,
                                                                sizeof(floating *))
                dyrows = all_dyrows + threadid() * per_thread(images_per_step * Ho,
                                                                  sizeof(floating *))
                rowlen = all_rowlen + threadid() * per_thread(images_per_step * Ho, sizeof(int))
                kblock = task % n_kblocks
                rest = task // n_kblocks
                ctile = rest % n_ctiles
                rest = rest // n_ctiles
                s = rest % kernel_w
                rest = rest // kernel_w
                r = rest % kernel_h
                chunk = rest // kernel_h
                c0 = ctile * tile_channels
                tc = <int> min(tile_channels, C - c0)
                k0 = kblock * block
                tile = pbase + (((chunk * kernel_h + r) * kernel_w + s) * C + c0) * Kp + k0
                if step == 0:
                    for c in range(tc):
                        memset(tile + c * Kp, 0, block * sizeof(floating))
                # Output columns whose tap (r, s) lands inside the image.
                num = pad_left - s * dilation_w
                ow_lo = 0 if num <= 0 else (num + stride_w - 1) // stride_w
                ow_hi = -1 if W - 1 + num < 0 else min(Wo - 1, (W - 1 + num) // stride_w)
                n_first = chunk * chunk_len + step * images_per_step
                n_end = min(n_first + images_per_step, (chunk + 1) * chunk_len, n_images)
                nrows = 0
                if ow_hi >= ow_lo:
                    for n in range(n_first, n_end):
                        for oh in range(Ho):
                            ih = oh * stride_h - pad_top + r * dilation_h
                            if ih < 0 or ih >= H:
                                continue
                            xrows[nrows] = xbase + (((n * H + ih) * W
                                                     + ow_lo * stride_w - num) * C + c0)
                            dyrows[nrows] = dybase + ((n * Ho + oh) * Wo + ow_lo) * Kp + k0
                            rowlen[nrows] = ow_hi - ow_lo + 1
                            nrows = nrows + 1
                if nrows > 0:
                    if floating is float:
                        w32.tile(nv, tc, xrows, dyrows, rowlen, nrows, stride_w * C, Kp, tile,
                                 Kp)
                    else:
                        w64.tile(nv, tc, xrows, dyrows, rowlen, nrows, stride_w * C, Kp, tile,
                                 Kp)
    finally:
        free(all_xrows)
        free(all_dyrows)
        free(all_rowlen)


cdef inline Py_ssize_t _lcm(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t x = a, y = b, t
    while y:
        t = x % y
        x = y
        y = t
    return a // x * b


cdef int _bias_grad(floating *dy, const floating *relu_y, Py_ssize_t n_rows, Py_ssize_t K,
                    floating *db, int n_chunks, int isa, int n_threads) except -1 nogil:
    """db[k] = sum of dy[:, k] in double; with relu_y, dy is first set to zero in place
    wherever relu_y <= 0 (the relu's backward pass, fused into the same read)."""
    cdef:
        # runs of whole 16-value vectors: the fewest pixels whose K values fill them, then
        # as many of those as fit in about 64 values
        Py_ssize_t base = _lcm(K, 16) // K
        Py_ssize_t group = base * max(1, 64 // (base * K))
        Py_ssize_t width = group * K, n_runs = n_rows // group
        Py_ssize_t chunk_len, chunk, run, q, k, row
        const floating *ysrc
        double *sums
        double *acc
        double total
        const fc_conv_runs_table_f32 *r32 = NULL
        const fc_conv_runs_table_f64 *r64 = NULL

    if floating is float:
        r32 = fc_conv_runs_table_f32_for(isa)
    else:
        r64 = fc_conv_runs_table_f64_for(isa)
    n_chunks = <int> max(1, min(n_chunks, n_runs))
    chunk_len = max(1, (n_runs + n_chunks - 1) // n_chunks)
    n_chunks = <int> ((n_runs + chunk_len - 1) // chunk_len)
    sums = <double *> calloc(max(1, n_chunks) * width, sizeof(double))
    if sums == NULL:
        with gil:
            raise MemoryError()
    for chunk in prange(n_chunks, schedule="static", num_threads=n_threads):
        acc = sums + chunk * width
        for run in range(chunk * chunk_len, min((chunk + 1) * chunk_len, n_runs)):
            ysrc = relu_y + run * width if relu_y != NULL else NULL
            if floating is float:
                r32.masked_sum(dy + run * width, ysrc, acc, width)
            else:
                r64.masked_sum(dy + run * width, ysrc, acc, width)
    # the rows past the last whole run, then the fold of each run position onto its channel
    for row in range(n_runs * group, n_rows):
        if relu_y != NULL:
            for k in range(K):
                if not relu_y[row * K + k] > 0:
                    dy[row * K + k] = 0
    for k in range(K):
        total = 0
        for chunk in range(n_chunks):
            for q in range(group):
                total = total + sums[chunk * width + q * K + k]
        for row in range(n_runs * group, n_rows):
            total = total + dy[row * K + k]
        db[k] = <floating> total
    free(sums)
    return 0


def bias_grad(
    const floating[:, ::1] dy,            # IN (pixels, K)
    floating[::1] db,                     # OUT (K,)
    int n_chunks, int n_threads, int isa=-1,
):
    """db[k] = sum of dy[:, k], accumulated in double.

    Runs of ``group`` pixels (whole vectors, about 64 values) are summed: sums[q] over the
    runs, then db[k] adds up every q with q % K == k. The runs are split into
    ``n_chunks`` fixed chunks, each summed on its own, the chunk sums are added in chunk
    order and the pixels past the last whole run at the end: the same result for any
    thread count. ``isa`` picks the SIMD path (-1: the CPU's best).
    """
    cdef Py_ssize_t n_rows = dy.shape[0], K = dy.shape[1]
    if K == 0:
        return
    if isa < 0:
        isa = fc_cpu_isa()
    with nogil:
        _bias_grad(<floating *> &dy[0, 0] if n_rows > 0 else NULL, NULL, n_rows, K, &db[0],
                   n_chunks, isa, n_threads)


def relu_backward_bias_grad(
    floating[:, ::1] dy,                  # IN/OUT (pixels, K): times (relu_y > 0), in place
    const floating[:, ::1] relu_y,        # IN (pixels, K): the relu's output
    floating[::1] db,                     # OUT (K,)
    int n_chunks, int n_threads, int isa=-1,
):
    """The relu's backward pass (dy = 0 where relu_y <= 0) and then bias_grad, in one read
    of dy."""
    cdef Py_ssize_t n_rows = dy.shape[0], K = dy.shape[1]
    if K == 0:
        return
    if isa < 0:
        isa = fc_cpu_isa()
    with nogil:
        _bias_grad(&dy[0, 0] if n_rows > 0 else NULL,
                   &relu_y[0, 0] if n_rows > 0 else NULL, n_rows, K, &db[0], n_chunks, isa,
                   n_threads)
