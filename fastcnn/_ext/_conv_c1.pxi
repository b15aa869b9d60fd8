# Included by _conv.pyx: single-input-channel layers (a network's first layer on grayscale
# images) on channel-expanded rows, forward and weight gradient.


def expand_channels(
    const floating[:, :, ::1] x,          # IN (N, H, W) single-channel images
    floating[:, :, ::1] xe,               # OUT (N, H + pad_top + pad_bottom, row length)
    int pad_top, int pad_left, int K, int isa, int n_threads,
):
    """Zero-padded, channel-expanded rows: xe[n, pad_top + i, (pad_left + j) * K + k] =
    x[n, i, j] for every k < K, zero everywhere else (padding and the row's tail)."""
    if x.shape[0] == 0 or xe.size == 0:
        return
    _expand_run(&x[0, 0, 0] if x.size else NULL, &xe[0, 0, 0], x.shape[0], x.shape[1],
                x.shape[2], xe.shape[1], xe.shape[2], pad_top, pad_left, K, isa, n_threads)


cdef void _expand_run(const floating *x, floating *xe, Py_ssize_t n_images, Py_ssize_t H,
                      Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t row_len, int pad_top,
                      int pad_left, int K, int isa, int n_threads) noexcept nogil:
    """expand_channels on the arrays at these addresses (x readable to the end of its
    last image)."""
    cdef:
        Py_ssize_t n, i, j, k, first = pad_left * K, end = (pad_left + W) * K
        floating *xrow
        floating *ximg
        const floating *src
        floating value
        const fc_conv_runs_table_f32 *r32 = NULL
        const fc_conv_runs_table_f64 *r64 = NULL

    if floating is float:
        r32 = fc_conv_runs_table_f32_for(isa)
    else:
        r64 = fc_conv_runs_table_f64_for(isa)
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        ximg = xe + n * Hp * row_len
        # padding rows, then each image row's left padding and tail
        memset(ximg, 0, pad_top * row_len * sizeof(floating))
        memset(ximg + (pad_top + H) * row_len, 0, (Hp - pad_top - H) * row_len * sizeof(floating))
        for i in range(H):
            xrow = ximg + (pad_top + i) * row_len
            memset(xrow, 0, first * sizeof(floating))
            memset(xrow + end, 0, (row_len - end) * sizeof(floating))
        if H == 0 or W == 0:
            continue
        src = x + n * H * W
        if K <= 16:   # x is readable to the end of the last image
            if floating is float:
                r32.expand_rows(src, W, W, K, ximg + pad_top * row_len + first, row_len, H,
                                (n_images - n) * H * W)
            else:
                r64.expand_rows(src, W, W, K, ximg + pad_top * row_len + first, row_len, H,
                                (n_images - n) * H * W)
            continue
        for i in range(H):
            xrow = ximg + (pad_top + i) * row_len + first
            for j in range(W):
                value = src[i * W + j]
                for k in range(K):
                    xrow[j * K + k] = value


def conv2d_forward_c1(
    const floating[:, :, ::1] xe,         # IN (N, Hp, row length) from expand_channels
    const floating[:, ::1] wrows,         # IN (R*S, Lv): element ow*K + k = w[r, s, k]
    const floating[::1] bias_row,         # IN (Lv,): element ow*K + k = bias[k]
    floating[:, :, :, ::1] out,           # OUT (N, Ho, Wo, K)
    int kernel_h, int kernel_w, int stride_h, int dilation_h, int dilation_w,
    bint relu, int isa, int n_threads,
):
    """Single-input-channel convolution with stride 1 along the width; a few output rows
    of one image per task (they share every weight vector loaded).

    Lv is Wo*K rounded up to whole vectors; every row of ``xe`` must be readable up to
    ``(kernel_w - 1) * dilation_w * K + Lv``.
    """
    if out.size == 0:
        return
    if _c1_forward_run(&xe[0, 0, 0], xe.shape[1], xe.shape[2], &wrows[0, 0], wrows.shape[1],
                       &bias_row[0], &out[0, 0, 0, 0], out.shape[0], out.shape[1],
                       out.shape[2], out.shape[3], kernel_h, kernel_w, stride_h, dilation_h,
                       dilation_w, relu, isa, n_threads):
        raise MemoryError()


cdef int _c1_forward_run(const floating *xe, Py_ssize_t Hp, Py_ssize_t row_len,
                         const floating *wrows, Py_ssize_t ldw, const floating *bias_row,
                         floating *out, Py_ssize_t n_images, Py_ssize_t Ho, Py_ssize_t Wo,
                         Py_ssize_t K, int kernel_h, int kernel_w, int stride_h,
                         int dilation_h, int dilation_w, bint relu, int isa,
                         int n_threads) noexcept nogil:
    """conv2d_forward_c1 on the arrays at these addresses (a non-empty output): 0, or -1
    where memory ran out."""
    cdef:
        Py_ssize_t L = Wo * K
        # the same for both types (a register budget)
        int rows_per_task = fc_conv_c1_table_f32_for(isa).rows
        Py_ssize_t blocks = (Ho + rows_per_task - 1) // rows_per_task
        Py_ssize_t n_tasks = n_images * blocks
        Py_ssize_t task, n, oh, oh0
        int r, j, nr
        floating *orow
        const floating **rows
        const floating **all_rows
        const fc_conv_c1_table_f32 *c32 = NULL
        const fc_conv_c1_table_f64 *c64 = NULL

    if floating is float:
        c32 = fc_conv_c1_table_f32_for(isa)
    else:
        c64 = fc_conv_c1_table_f64_for(isa)
    all_rows = <const floating **> malloc(
        n_threads * per_thread(rows_per_task * kernel_h, sizeof(floating *)) * sizeof(floating *))
    if all_rows == NULL:
        return -1
    for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
        rows = all_rows + threadid() * per_thread(rows_per_task * kernel_h, sizeof(floating *))
        n = task // blocks
        oh0 = (task % blocks) * rows_per_task
        # whole blocks of rows, then the last rows one at a time
        oh = oh0
        while oh < min(oh0 + rows_per_task, Ho):
            nr = rows_per_task if oh + rows_per_task <= Ho else 1
            for j in range(nr):
                for r in range(kernel_h):
                    rows[j * kernel_h + r] = xe + (n * Hp + (oh + j) * stride_h
                                                   + r * dilation_h) * row_len
            orow = out + (n * Ho + oh) * L
            if floating is float:
                c32.forward(nr, rows, kernel_h, kernel_w, dilation_w * K, wrows, ldw,
                            bias_row, relu, L, orow, L)
            else:
                c64.forward(nr, rows, kernel_h, kernel_w, dilation_w * K, wrows, ldw,
                            bias_row, relu, L, orow, L)
            oh = oh + nr
    free(all_rows)
    return 0


def conv2d_backward_weights_c1(
    const floating[:, :, ::1] xe,         # IN (N, Hp, row length) from expand_channels
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, K)
    floating[:, :, :, ::1] sums,          # OUT (n_chunks, R, S, Lv)
    int stride_h, int dilation_h, int dilation_w, int isa, int n_threads,
):
    """Weight gradient of conv2d_forward_c1 before the sum over output columns:
    sums[chunk, r, s, ow*K + k] = sum over the chunk's images and output rows of
    x[.., ow + s*dilation_w] * dy[.., ow, k] (zero past Wo*K). One (chunk, filter row,
    group of taps) per task; the group shares every delta vector loaded."""
    cdef:
        Py_ssize_t n_images = xe.shape[0], Hp = xe.shape[1], row_len = xe.shape[2]
        Py_ssize_t Ho = dy.shape[1], K = dy.shape[3], L = dy.shape[2] * dy.shape[3]
        Py_ssize_t n_chunks = sums.shape[0], Lv = sums.shape[3]
        int kernel_h = sums.shape[1], kernel_w = sums.shape[2]
        int taps_per_task = fc_conv_c1_table_f32_for(isa).taps
        int groups = (kernel_w + taps_per_task - 1) // taps_per_task
        Py_ssize_t chunk_len = (n_images + n_chunks - 1) // n_chunks
        Py_ssize_t n_tasks = n_chunks * kernel_h * groups
        Py_ssize_t scratch = chunk_len * Ho
        Py_ssize_t task, chunk, n, oh
        int r, s0, nt, nrows
        const floating *xbase = &xe[0, 0, 0]
        const floating *dybase = &dy[0, 0, 0, 0]
        const floating **xrows
        const floating **dyrows
        const floating **all_rows
        const fc_conv_c1_table_f32 *c32 = NULL
        const fc_conv_c1_table_f64 *c64 = NULL

    if n_tasks == 0:
        return
    if floating is float:
        c32 = fc_conv_c1_table_f32_for(isa)
    else:
        c64 = fc_conv_c1_table_f64_for(isa)
    all_rows = <const floating **> malloc(
        n_threads * per_thread(2 * scratch, sizeof(floating *)) * sizeof(floating *))
    try:
        if all_rows == NULL:
            raise MemoryError()
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            xrows = all_rows + threadid() * per_thread(2 * scratch, sizeof(floating *))
            dyrows = xrows + scratch
            s0 = (task % groups) * taps_per_task
            nt = min(taps_per_task, kernel_w - s0)
            r = (task // groups) % kernel_h
            chunk = task // (groups * kernel_h)
            nrows = 0
            for n in range(chunk * chunk_len, min((chunk + 1) * chunk_len, n_images)):
                for oh in range(Ho):
                    xrows[nrows] = xbase + ((n * Hp + oh * stride_h + r * dilation_h) * row_len
                                            + s0 * dilation_w * K)
                    dyrows[nrows] = dybase + (n * Ho + oh) * L
                    nrows = nrows + 1
            if floating is float:
                c32.weight_grad(nt, xrows, dyrows, nrows, dilation_w * K, L,
                                &sums[chunk, r, s0, 0], Lv)
            else:
                c64.weight_grad(nt, xrows, dyrows, nrows, dilation_w * K, L,
                                &sums[chunk, r, s0, 0], Lv)
    finally:
        free(all_rows)


def conv2d_forward_c1_max_pool(
    const floating[:, :, ::1] x,          # IN (N, H, W) single-channel images
    const floating[:, ::1] w,             # IN (R*S, K): w[r * S + s, k]
    const floating[::1] bias,             # IN (K,)
    floating[:, :, :, ::1] out,           # OUT (N, Ho // 2, Wo // 2, K)
    int kernel_h, int kernel_w, int stride_h, int pad_top, int pad_bottom, int pad_left,
    int pad_right, int dilation_h, int dilation_w, bint relu, int isa, int n_threads,
):
    """Single-input-channel convolution with stride 1 along the width (then relu), and the
    2x2 max pool with stride 2 after it, in one pass (prediction): the same values as
    conv2d_forward_c1 then max_pool2d_values_forward. One image per task, one pooled row
    per kernel call. The kernel reads each row in whole vectors: images without padding
    whose rows hold them are read where they are, others are copied into the thread's
    scratch, into rows long enough, with their padding (zeroed once: only the image's own
    pixels are written there)."""
    cdef _ConvArgs a
    _input_args(&a, x.shape[0], x.shape[1], x.shape[2], 1)
    a.Hp, a.Wp, a.K = out.shape[1], out.shape[2], out.shape[3]
    a.kernel_h, a.kernel_w, a.stride_h = kernel_h, kernel_w, stride_h
    a.pad_top, a.pad_bottom, a.pad_left, a.pad_right = pad_top, pad_bottom, pad_left, pad_right
    a.dilation_h, a.dilation_w, a.relu, a.isa = dilation_h, dilation_w, relu, isa
    if out.size == 0:
        return
    if _c1_max_pool_run(&a, &x[0, 0, 0], &w[0, 0], &bias[0], &out[0, 0, 0, 0], n_threads):
        raise MemoryError()


cdef int _c1_max_pool_run(const _ConvArgs *a, const floating *x, const floating *w,
                          const floating *bias, floating *out, int n_threads) noexcept nogil:
    """conv2d_forward_c1_max_pool on the arrays at these addresses, as ``a`` describes them
    (a non-empty output): 0, or -1 where memory ran out."""
    cdef:
        Py_ssize_t n_images = a.n_images, H = a.H, W = a.W
        Py_ssize_t Hp = a.Hp, Wp = a.Wp, K = a.K
        int kernel_h = a.kernel_h, kernel_w = a.kernel_w, stride_h = a.stride_h
        int pad_top = a.pad_top, pad_bottom = a.pad_bottom
        int pad_left = a.pad_left, pad_right = a.pad_right
        int dilation_h = a.dilation_h, dilation_w = a.dilation_w
        bint relu = a.relu
        int isa = a.isa
        int lanes = (fc_conv_c1_table_f32_for(isa).pool_lanes if floating is float
                     else fc_conv_c1_table_f64_for(isa).pool_lanes)
        Py_ssize_t reach = (2 * Wp + lanes - 1) // lanes * lanes + (kernel_w - 1) * dilation_w
        bint in_place = (pad_top == 0 and pad_bottom == 0 and pad_left == 0 and pad_right == 0
                         and reach <= W)
        Py_ssize_t ld = W if in_place else max(pad_left + W + pad_right, reach)
        Py_ssize_t rows = pad_top + H + pad_bottom
        Py_ssize_t scratch = 0 if in_place else per_thread(rows * ld, sizeof(floating))
        Py_ssize_t n, i, p
        floating *all_images = NULL
        floating *image
        const floating *src
        const fc_conv_c1_table_f32 *c32 = NULL
        const fc_conv_c1_table_f64 *c64 = NULL

    if floating is float:
        c32 = fc_conv_c1_table_f32_for(isa)
    else:
        c64 = fc_conv_c1_table_f64_for(isa)
    if not in_place:
        all_images = <floating *> calloc(n_threads * scratch, sizeof(floating))
        if all_images == NULL:
            return -1
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        if in_place:
            src = x + n * H * W
        else:
            image = all_images + threadid() * scratch
            for i in range(H):
                memcpy(image + (pad_top + i) * ld + pad_left, x + (n * H + i) * W,
                       W * sizeof(floating))
            src = image
        for p in range(Hp):
            if floating is float:
                c32.forward_pool(src + 2 * p * stride_h * ld, stride_h * ld,
                                 dilation_h * ld, kernel_h, kernel_w, dilation_w, w,
                                 K, bias, relu, Wp, out + (n * Hp + p) * Wp * K)
            else:
                c64.forward_pool(src + 2 * p * stride_h * ld, stride_h * ld,
                                 dilation_h * ld, kernel_h, kernel_w, dilation_w, w,
                                 K, bias, relu, Wp, out + (n * Hp + p) * Wp * K)
    free(all_images)
    return 0
