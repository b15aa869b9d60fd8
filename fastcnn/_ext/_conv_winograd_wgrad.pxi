# Included by _conv.pyx: the weight gradient of a 3x3, stride-1 convolution by Winograd,
# F(3x3, 4x4) (mixed-precision training's).


def winograd_weight_grad(
    const floating[:, :, :, ::1] x,    # IN (N, H, W, C)
    const floating[:, :, :, ::1] dy,   # IN (N, Ho, Wo, K)
    floating[:, :, ::1] m,             # OUT (36, C, Kp), Kp = K rounded up to a block
    int pad_top, int pad_left, int isa, int nv, int block, int chunk, int span,
    int n_threads,
):
    """m[p] = sum over the output's 4x4 tiles of (B^T d B)[p]^T (A g A^T)[p], the 36
    positions of F(3x3, 4x4): d each tile's 6x6 input patch (zeros off the image), g its
    output gradients (zeros past the output's edge). The weight gradient is then
    G^T m G (``fastcnn.ops._winograd.weight_grad``).

    The tiles go in spans of ``span`` (a multiple of ``chunk``, itself of 16): a span's
    transformed patches and gradients are made first, one task per tile, into shared
    buffers (chunks of ``chunk`` tiles, (36, chunk, C) and (36, chunk, Kp)); then one
    task per (position, block of ``block`` output channels, rows of input channels) adds
    that span's products into m, chunk after chunk. Each element of m is summed by one
    task in an order fixed by the data: the result does not depend on the thread count.
    """
    cdef _ConvArgs a
    if chunk <= 0 or chunk % 16 or span <= 0 or span % chunk:
        raise ValueError(f"chunk ({chunk}) is a positive multiple of 16 and span ({span}) "
                         "of chunk")
    if m.shape[0] != 36 or m.shape[1] != x.shape[3] or m.shape[2] % block \
            or m.shape[2] < dy.shape[3]:
        raise ValueError(f"m is (36, C, Kp), Kp a multiple of {block} of at least K, not "
                         f"({m.shape[0]}, {m.shape[1]}, {m.shape[2]})")
    _input_args(&a, x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    a.Ho, a.Wo, a.K, a.n_kblocks = dy.shape[1], dy.shape[2], dy.shape[3], m.shape[2] // block
    a.pad_top, a.pad_left, a.isa, a.nv, a.block = pad_top, pad_left, isa, nv, block
    a.group, a.tile, a.alpha = chunk, 4, 6
    if a.C * m.shape[2] == 0:
        return
    if a.n_images * a.Ho * a.Wo == 0:
        memset(&m[0, 0, 0], 0, 36 * a.C * m.shape[2] * sizeof(floating))
        return
    if _winograd_wgrad_run(&a, span, &x[0, 0, 0, 0], &dy[0, 0, 0, 0], &m[0, 0, 0],
                           n_threads):
        raise MemoryError()


cdef int _winograd_wgrad_run(const _ConvArgs *a, Py_ssize_t span, const floating *xbase,
                             const floating *gbase, floating *mbase,
                             int n_threads) noexcept nogil:
    """winograd_weight_grad on the arrays at these addresses: 0, or -1 where memory ran
    out."""
    cdef:
        Py_ssize_t N = a.n_images, H = a.H, W = a.W, Ho = a.Ho, Wo = a.Wo
        long C = a.C, K = a.K
        Py_ssize_t n_kblocks = a.n_kblocks, chunk = a.group
        int block = a.block, nv = a.nv, pad_top = a.pad_top, pad_left = a.pad_left
        long Kp = n_kblocks * block
        Py_ssize_t tiles_h = (Ho + 3) // 4, tiles_w = (Wo + 3) // 4
        Py_ssize_t per_image = tiles_h * tiles_w
        Py_ssize_t n_tiles = N * per_image
        int rows_max = fc_wino_table_f32_for(a.isa).rows[0 if nv == 1 else 1]
        # input channels in n_rows groups of (at most) rows each
        Py_ssize_t n_rows = (C + rows_max - 1) // rows_max
        int rows = <int> ((C + n_rows - 1) // n_rows)
        Py_ssize_t n_tasks = 36 * n_kblocks * n_rows
        Py_ssize_t s0, count, l, t, n, ti, tj, j, tc, task, rb, kb, c0
        int p, r, q, tp, row, col, g_rows, g_cols
        long thread_len = per_thread(36 * max(C, K) + 16 * K, sizeof(floating))
        floating *memory = NULL
        floating *xs
        floating *gs
        floating *mine
        floating *zeros
        floating *tmp
        floating *gpatch
        const floating *source
        long ld_row
        floating *xj
        floating *gj
        const fc_wino_table_f32 *w32 = NULL
        const fc_wino_table_f64 *w64 = NULL

    if floating is float:
        w32 = fc_wino_table_f32_for(a.isa)
    else:
        w64 = fc_wino_table_f64_for(a.isa)
    span = min(span, (n_tiles + chunk - 1) // chunk * chunk)
    # the span's transformed patches and gradients, each thread's scratch, C zeros (the
    # padding the input transform reads)
    memory = <floating *> malloc((36 * span * (C + Kp) + n_threads * thread_len + C)
                                 * sizeof(floating))
    if memory == NULL:
        return -1
    xs = memory
    gs = xs + 36 * span * C
    zeros = gs + 36 * span * Kp + n_threads * thread_len
    memset(zeros, 0, C * sizeof(floating))
    s0 = 0
    while s0 < n_tiles:
        count = min(span, n_tiles - s0)
        # 1. the span's tiles: transformed patches and output gradients, chunk by chunk
        for l in prange(count, schedule="static", nogil=True, num_threads=n_threads):
            mine = gs + 36 * span * Kp + threadid() * thread_len
            tmp = mine
            gpatch = tmp + 36 * max(C, K)
            j = l // chunk
            tc = min(chunk, count - j * chunk)
            xj = xs + 36 * j * chunk * C + (l - j * chunk) * C
            gj = gs + 36 * j * chunk * Kp + (l - j * chunk) * Kp
            t = s0 + l
            n = t // per_image
            ti = (t % per_image) // tiles_w
            tj = t % tiles_w
            row = <int> (4 * ti - pad_top)
            col = <int> (4 * tj - pad_left)
            _input_tile(w32, w64, xbase + n * H * W * C, H, W, C, row, col, 6, zeros, tmp,
                        xj, tc * C)
            g_rows = <int> min(4, Ho - 4 * ti)
            g_cols = <int> min(4, Wo - 4 * tj)
            if g_rows == 4 and g_cols == 4:
                source = gbase + ((n * Ho + 4 * ti) * Wo + 4 * tj) * K
                ld_row = Wo * K
            else:
                _patch_copy(gpatch, gbase + n * Ho * Wo * K, Ho, Wo, K, <int> (4 * ti),
                            <int> (4 * tj), 4, 4)
                source = gpatch
                ld_row = 4 * K
            if floating is float:
                w32.grad_output(source, ld_row, K, tmp, gj, tc * Kp)
            else:
                w64.grad_output(source, ld_row, K, tmp, gj, tc * Kp)
            if Kp > K:
                for p in range(36):
                    memset(gj + p * tc * Kp + K, 0, (Kp - K) * sizeof(floating))
        # 2. their products, added into m: a task per (position, block, rows)
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            p = <int> (task // (n_kblocks * n_rows))
            kb = (task // n_rows) % n_kblocks
            rb = task % n_rows
            c0 = rb * rows
            tp = <int> min(rows, C - c0)
            for j in range(0, (count + chunk - 1) // chunk):
                tc = min(chunk, count - j * chunk)
                xj = xs + 36 * j * chunk * C + p * tc * C + c0
                gj = gs + 36 * j * chunk * Kp + p * tc * Kp + kb * block
                if floating is float:
                    w32.outer(nv, tp, xj, C, gj, Kp, tc, s0 > 0 or j > 0,
                              mbase + (p * C + c0) * Kp + kb * block, Kp)
                else:
                    w64.outer(nv, tp, xj, C, gj, Kp, tc, s0 > 0 or j > 0,
                              mbase + (p * C + c0) * Kp + kb * block, Kp)
        s0 = s0 + span
    free(memory)
    return 0
