# Included by _conv.pyx: bfloat16 operands with float32 accumulation (_conv_bf16_kernels.h),
# for the forward pass and the stride phases of the data gradient. bf16 values travel as
# uint16 arrays (NumPy has no bf16 type); the reduction's channel count is even, each
# pair of channels one 32-bit word.

cdef extern from "_conv_bf16_kernels.h" nogil:
    ctypedef struct fc_conv_bf16_table:
        int lanes
        int tile_pixels[2]
        void (*tile)(int nv, int tp, const unsigned short *x, const long *pix_off,
                     const int *pix_pos, const fc_taps *taps, int cin,
                     const unsigned short *zeros, const unsigned short *w, long ldw,
                     const float *bias, int accumulate, int relu, float *const *out,
                     int kcount) noexcept nogil
        void (*to_bf16)(const float *src, long n, unsigned short *dst) noexcept nogil
        void (*interleave)(const float *a, const float *b, long n,
                           unsigned short *dst) noexcept nogil
        void (*wgrad_tile)(int nv, int tc, const unsigned short *const *xrows,
                           const unsigned short *const *dyrows, const int *rowlen,
                           int nrows, long xstride, long dystride, float *tile,
                           long ldt) noexcept nogil
        void (*patch_row)(const unsigned short *const *runs, int n_runs, int run,
                          long step, long n, int ce, unsigned short *dst) noexcept nogil
    const fc_conv_bf16_table *fc_conv_bf16_table_get()
    int fc_cpu_has_bf16()
    int FC_BF16_WGRAD_ROWS
    int FC_BF16_PATCH_RUNS
    int FC_BF16_PATCH_VECTORS


cdef struct _WgradLayout:
    # conv2d_backward_weights_bf16's tasks over one kernel row: its taps taken one at a
    # time (task_w = S) or all together (task_w = 1, whole_rows), and each in n_ctiles
    # tiles of up to `rows` of its n_values (channel, or (tap, channel)) rows
    bint whole_rows
    int task_w, rows
    Py_ssize_t n_values, n_ctiles


cdef inline _WgradLayout _wgrad_layout(Py_ssize_t C, int kernel_w,
                                       int dilation_w) noexcept nogil:
    cdef _WgradLayout a
    a.whole_rows = dilation_w == 1 and C < FC_TILE_CHANNELS
    a.task_w = 1 if a.whole_rows else kernel_w
    a.rows = FC_BF16_WGRAD_ROWS if a.whole_rows else FC_TILE_CHANNELS
    a.n_values = kernel_w * C if a.whole_rows else C
    a.n_ctiles = (a.n_values + a.rows - 1) // a.rows
    return a


def bf16_wgrad_layout(Py_ssize_t C, int kernel_w, int dilation_w):
    """(whole_rows, tiles per kernel row and output block) of
    conv2d_backward_weights_bf16 for C input channels: whole_rows where a task takes a
    kernel row's (tap, channel) values rather than one tap's channels."""
    cdef _WgradLayout a = _wgrad_layout(C, kernel_w, dilation_w)
    return bool(a.whole_rows), int(a.task_w * a.n_ctiles)


def bf16_available():
    """Whether this CPU has AVX512_BF16 (and the AVX-512 the bf16 kernels are built for)."""
    return bool(fc_cpu_has_bf16())


cdef const fc_conv_bf16_table *_bf16_table() except NULL:
    cdef const fc_conv_bf16_table *table = fc_conv_bf16_table_get()
    if table == NULL:
        raise RuntimeError("this CPU has no AVX512_BF16 instructions")
    return table


def to_bf16(
    const float[:, :, :, :] x,            # IN (N, H, W, C), channels contiguous
    unsigned short[:, :, :, ::1] out,     # OUT (N, H, W, C2), C2 >= C: channels past C zero
    int n_threads,
):
    """out = x rounded to bf16 (to nearest, ties to even), one image row per task; with
    more channels out than in (an odd count padded), a row of contiguous pixels is
    rounded into the thread's scratch and its pixels gathered from there."""
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t C2 = out.shape[3], task, n, h, j
        bint pixels_contiguous = x.strides[2] == C * sizeof(float)
        bint runs = pixels_contiguous and C2 == C
        bint gather = (pixels_contiguous and not runs and C > 0
                       and C2 <= 32 * FC_BF16_PATCH_VECTORS)
        unsigned short *memory = NULL
        const unsigned short **row_memory = NULL
        unsigned short *row
    if N * H * W == 0:
        return
    if C and x.strides[3] != sizeof(float):
        raise ValueError("to_bf16 needs x's channels contiguous")
    if gather:
        memory = <unsigned short *> malloc(n_threads * (W * C + 32) * sizeof(unsigned short))
        row_memory = <const unsigned short **> malloc(n_threads * sizeof(void *))
        if memory == NULL or row_memory == NULL:
            free(memory)
            free(row_memory)
            raise MemoryError()
    try:
        for task in prange(N * H, schedule="static", nogil=True, num_threads=n_threads):
            n = task // H
            h = task % H
            if runs:
                k.to_bf16(&x[n, h, 0, 0], W * C, &out[n, h, 0, 0])
            elif gather:
                row = memory + threadid() * (W * C + 32)
                k.to_bf16(&x[n, h, 0, 0], W * C, row)
                row_memory[threadid()] = row
                k.patch_row(row_memory + threadid(), 1, <int> C, C, W, <int> C2,
                            &out[n, h, 0, 0])
            else:
                for j in range(W):
                    if C:
                        k.to_bf16(&x[n, h, j, 0], C, &out[n, h, j, 0])
                    if C2 > C:
                        memset(&out[n, h, j, C], 0, (C2 - C) * sizeof(unsigned short))
    finally:
        free(memory)
        free(row_memory)


cdef struct _Patches:
    # expand_patches_bf16's geometry, and the image columns inside a patch row's span
    Py_ssize_t H, W, C, Wo, CE, span, inside_lo, inside_hi, row_len
    int kernel_h, kernel_w, stride_h, stride_w, pad_top, dilation_h, dilation_w
    int n_runs, run


cdef _Patches _patches(Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t CE,
                       int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top,
                       int pad_left, int dilation_h, int dilation_w) except *:
    cdef _Patches a
    cdef Py_ssize_t patch = kernel_h * kernel_w * C
    if kernel_h < 1 or kernel_w < 1 or stride_h < 1 or stride_w < 1 or dilation_h < 1 \
            or dilation_w < 1 or pad_top < 0 or pad_left < 0:
        raise ValueError("expanded patches: kernel, stride and dilation are >= 1 and the "
                         "paddings >= 0")
    a.H, a.W, a.C, a.Wo, a.CE = H, W, C, Wo, CE
    a.kernel_h, a.kernel_w, a.stride_h, a.stride_w = kernel_h, kernel_w, stride_h, stride_w
    a.pad_top, a.dilation_h, a.dilation_w = pad_top, dilation_h, dilation_w
    a.n_runs = kernel_h if dilation_w == 1 else kernel_h * kernel_w
    a.run = <int> (kernel_w * C if dilation_w == 1 else C)
    if CE < patch or CE % 2:
        raise ValueError(f"an expanded patch holds an even count of at least {patch} values, "
                         f"not {CE}")
    if a.n_runs > FC_BF16_PATCH_RUNS or CE > 32 * FC_BF16_PATCH_VECTORS:
        raise ValueError(f"expanded patches take at most {FC_BF16_PATCH_RUNS} runs (kernel "
                         f"rows, or taps when dilated) and {32 * FC_BF16_PATCH_VECTORS} "
                         f"values, not {a.n_runs} and {CE}")
    # the padded columns a row's pixels read: 0 .. span-1, image column 0 at pad_left
    a.span = (Wo - 1) * stride_w + (kernel_w - 1) * dilation_w + 1 if Wo else 0
    a.inside_lo = min(pad_left, a.span)
    a.inside_hi = min(pad_left + W, a.span)
    a.row_len = a.span * C + 32
    return a


cdef inline void _patch_row(const fc_conv_bf16_table *k, const _Patches *a, const float *image,
                            Py_ssize_t p, unsigned short *rows, const unsigned short **runs,
                            unsigned short *dst) noexcept nogil:
    """dst (Wo, CE) = the expanded patches of output row p of image (H, W, C): the input
    rows under it rounded into ``rows`` (R of a.row_len, zero where nothing writes: the
    columns either side of the image), then each pixel's runs of them gathered."""
    cdef int i, j, per_row = a.n_runs // a.kernel_h
    cdef Py_ssize_t h
    for i in range(a.kernel_h):
        h = p * a.stride_h + i * a.dilation_h - a.pad_top
        if h < 0 or h >= a.H or a.inside_hi <= a.inside_lo:
            for j in range(per_row):
                runs[i * per_row + j] = NULL
            continue
        k.to_bf16(image + h * a.W * a.C, (a.inside_hi - a.inside_lo) * a.C,
                  rows + i * a.row_len + a.inside_lo * a.C)
        for j in range(per_row):
            runs[i * per_row + j] = rows + i * a.row_len + j * a.dilation_w * a.C
    k.patch_row(runs, a.n_runs, a.run, a.stride_w * a.C, a.Wo, <int> a.CE, dst)


def expand_patches_bf16(
    const float[:, :, :, ::1] x,          # IN (N, H, W, C)
    unsigned short[:, :, :, ::1] out,     # OUT (N, Ho, Wo, CE) bf16, CE >= R * S * C, even
    int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top, int pad_left,
    int dilation_h, int dilation_w, int n_threads,
):
    """out[n, p, q, (i * S + j) * C + c] = bf16(x[n, p * stride_h + i * dilation_h -
    pad_top, q * stride_w + j * dilation_w - pad_left, c]), zero off the image, and the
    values past R * S * C zero: each output pixel's whole R x S patch as its channels,
    what :func:`conv2d_forward_bf16_patches` multiplies (a convolution of few input
    channels as a 1x1 one on them: one pair of the reduction per 32-bit word, no tap's
    channels padded on their own). One output row per task: the R input rows under it
    rounded into the thread's scratch, then each pixel's runs of them (a kernel row's
    S * C values; dilated, each tap's C) gathered."""
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t N = x.shape[0], Ho = out.shape[1], task, n, p
        _Patches a = _patches(x.shape[1], x.shape[2], x.shape[3], out.shape[2],
                              out.shape[3], kernel_h, kernel_w, stride_h, stride_w, pad_top,
                              pad_left, dilation_h, dilation_w)
        unsigned short *memory = NULL
        const unsigned short **run_memory = NULL
    if out.shape[0] != N:
        raise ValueError(f"out holds {out.shape[0]} images, x {N}")
    if N * Ho * a.Wo == 0:
        return
    memory = <unsigned short *> calloc(n_threads * kernel_h * a.row_len,
                                       sizeof(unsigned short))
    run_memory = <const unsigned short **> malloc(n_threads * a.n_runs * sizeof(void *))
    try:
        if memory == NULL or run_memory == NULL:
            raise MemoryError()
        for task in prange(N * Ho, schedule="static", nogil=True, num_threads=n_threads):
            n = task // Ho
            p = task % Ho
            _patch_row(k, &a, &x[n, 0, 0, 0], p, memory + threadid() * kernel_h * a.row_len,
                       run_memory + threadid() * a.n_runs, &out[n, p, 0, 0])
    finally:
        free(memory)
        free(run_memory)


def conv2d_forward_bf16_patches(
    const float[:, :, :, ::1] x,          # IN (N, H, W, C)
    const unsigned short[:, :, :, ::1] wpack,   # IN (K blocks, 1, CE/2, 2 * block) bf16
    const float[::1] bias,                # IN (K blocks * block,)
    float[:, :, :, ::1] out,              # OUT (N, Ho, Wo, K)
    int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top, int pad_left,
    int dilation_h, int dilation_w, bint relu, int nv, int rows_per_task, int n_threads,
):
    """conv2d_forward_bf16 of x by w (R, S, C, K) packed as one tap of its R * S * C
    values (CE of them: padded to even), on each output pixel's expanded patch
    (:func:`expand_patches_bf16`): a task expands ``rows_per_task`` output rows of an
    image into its thread's scratch, where they stay in cache, and runs the 1x1 tiles
    over them. Each output pixel is one sum in a fixed order: the result does not depend
    on the thread count, nor on the batch."""
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t N = x.shape[0], Ho = out.shape[1], Wo = out.shape[2], K = out.shape[3]
        Py_ssize_t CE = 2 * wpack.shape[2], n_kblocks = wpack.shape[0]
        _Patches a = _patches(x.shape[1], x.shape[2], x.shape[3], Wo, CE, kernel_h,
                              kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h,
                              dilation_w)
        int block = 16 * nv, tp_max = k.tile_pixels[0 if nv == 1 else 1]
        Py_ssize_t blocks_per_image, n_tasks, task, n, p0, p1, p, pixels, t0, n_tiles, t
        Py_ssize_t thread_len, patch_len, rows_len, kblock, k0
        int tp, i
        unsigned short *memory = NULL
        const unsigned short **run_memory = NULL
        unsigned short *patches
        unsigned short *rows
        long *pix_off
        int *pix_pos
        float **outs
        float *dest
        long tap_off = 0
        int tap_row = 0, tap_col = 0, tap_id = 0
        fc_taps one_tap
    if wpack.shape[1] != 1 or wpack.shape[3] != 2 * block or n_kblocks * block < K:
        raise ValueError(f"wpack must be (K blocks, 1, CE/2, {2 * block}) with K blocks * "
                         f"{block} >= {K}, not {tuple(wpack.shape)[:4]}")
    if out.shape[0] != N or bias.shape[0] < n_kblocks * block or rows_per_task < 1:
        raise ValueError("out must hold x's images, bias K blocks * block values and "
                         "rows_per_task be >= 1")
    if N * Ho * Wo * K == 0:
        return
    rows_per_task = <int> min(rows_per_task, Ho)
    blocks_per_image = (Ho + rows_per_task - 1) // rows_per_task
    n_tasks = N * blocks_per_image
    one_tap.off, one_tap.row, one_tap.col, one_tap.ids = &tap_off, &tap_row, &tap_col, &tap_id
    one_tap.ntaps, one_tap.rows, one_tap.cols = 1, 1, 1
    # each thread's: the task's patches, the rows under a patch row, its runs, and a
    # tile's pixel offsets, (zero) grid positions and output pointers
    # (in uint16 values, each part at a multiple of 64 bytes)
    patch_len = (rows_per_task * Wo * CE + 31) // 32 * 32
    rows_len = (kernel_h * a.row_len + 31) // 32 * 32
    thread_len = patch_len + rows_len + (tp_max * 24 + 63) // 64 * 32
    memory = <unsigned short *> calloc(n_threads * thread_len, sizeof(unsigned short))
    run_memory = <const unsigned short **> malloc(n_threads * a.n_runs * sizeof(void *))
    try:
        if memory == NULL or run_memory == NULL:
            raise MemoryError()
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            patches = memory + threadid() * thread_len
            rows = patches + patch_len
            pix_off = <long *> (rows + rows_len)
            pix_pos = <int *> (pix_off + tp_max)
            outs = <float **> (pix_pos + 2 * tp_max)
            n = task // blocks_per_image
            p0 = (task % blocks_per_image) * rows_per_task
            p1 = min(p0 + rows_per_task, Ho)
            for p in range(p0, p1):
                _patch_row(k, &a, &x[n, 0, 0, 0], p, rows,
                           run_memory + threadid() * a.n_runs, patches + (p - p0) * Wo * CE)
            # the task's pixels in tiles of nearly equal size
            pixels = (p1 - p0) * Wo
            n_tiles = (pixels + tp_max - 1) // tp_max
            dest = &out[n, p0, 0, 0]
            for t in range(n_tiles):
                t0 = t * pixels // n_tiles
                tp = <int> ((t + 1) * pixels // n_tiles - t0)
                for i in range(tp):
                    pix_off[i] = (t0 + i) * CE
                    pix_pos[i] = 0
                    pix_pos[tp + i] = 0
                for kblock in range(n_kblocks):
                    k0 = kblock * block
                    for i in range(tp):
                        outs[i] = dest + (t0 + i) * K + k0
                    k.tile(nv, tp, patches, pix_off, pix_pos, &one_tap, <int> CE, patches,
                           &wpack[kblock, 0, 0, 0], block, &bias[k0], False, relu, outs,
                           <int> min(block, K - k0))
    finally:
        free(memory)
        free(run_memory)


def conv2d_forward_bf16(
    const unsigned short[:, :, :, ::1] x,   # IN (N, H, W, C) bf16, C even
    const unsigned short[:, :, :, ::1] wpack,   # IN (K blocks, R*S, C/2, 2 * block) bf16
    const float[::1] bias,                # IN (K blocks * block,)
    float[:, :, :, ::1] out,              # OUT (N, Ho, Wo, K)
    int kernel_h, int kernel_w,
    int stride_h, int stride_w,
    int pad_top, int pad_left,
    int dilation_h, int dilation_w,
    bint relu, int nv, bint weights_outer, int n_threads,
):
    """out = conv(x, w) + bias (then max(., 0) when ``relu``), as conv2d_forward with bf16
    operands: each pair of input channels' products summed in float32, in one fixed
    order, so the result does not depend on the thread count."""
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2]
        int C = x.shape[3]
        Py_ssize_t xs0 = H * W * C, xs1 = W * C, xs2 = C
        Py_ssize_t Ho = out.shape[1], Wo = out.shape[2], K = out.shape[3]
        Py_ssize_t n_pixels = Ho * Wo
        int block = 16 * nv
        int tp_max = k.tile_pixels[0 if nv == 1 else 1]
        int tp
        Py_ssize_t n_kblocks = wpack.shape[0]
        int ntaps = kernel_h * kernel_w
        long block_stride = <long> ntaps * C * block
        Py_ssize_t n_ptiles, n_tasks
        Py_ssize_t task, n, ptile, kblock, kblock_first, kblock_end, k0
        _Tile *tiles = NULL
        _Tile tile
        int i
        bint inside
        const unsigned short *xbase = &x[0, 0, 0, 0]
        const unsigned short *wbase = &wpack[0, 0, 0, 0]
        const float *bbase = &bias[0]
        float *obase = &out[0, 0, 0, 0]
        unsigned short *zeros
        fc_taps all_taps, row_taps
        const fc_taps *taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        float **outs
        long *pix_dest
        Py_ssize_t ow_lo = (pad_left + stride_w - 1) // stride_w
        Py_ssize_t ow_hi = (W - 1 - (kernel_w - 1) * dilation_w + pad_left) // stride_w

    if n_images * n_pixels * n_kblocks == 0:
        return
    if C % 2 or wpack.shape[1] != ntaps or wpack.shape[2] * 2 != C or wpack.shape[3] != 2 * block:
        raise ValueError("conv2d_forward_bf16: x needs an even channel count and wpack the "
                         "shape (K blocks, R*S, C/2, 2 * block)")
    if W - 1 - (kernel_w - 1) * dilation_w + pad_left < 0:
        ow_hi = -1
    ow_lo = min(ow_lo, Wo)
    ow_hi = max(ow_hi, ow_lo - 1)
    zeros = <unsigned short *> calloc(kernel_w * C + 2, sizeof(unsigned short))
    scratch.memory = NULL
    all_taps.off = row_taps.off = NULL
    all_taps.row = row_taps.row = NULL
    try:
        tiles = _tile_table(Ho, Wo, ow_lo, Wo - 1 - ow_hi, tp_max, &n_ptiles)
        if (zeros == NULL or _scratch_init(&scratch, n_threads, tp_max)
                or tiles == NULL
                or _tap_table(&all_taps, ntaps, H, W) or _tap_table(&row_taps, kernel_h, H, W)):
            raise MemoryError()
        n_tasks = n_images * n_ptiles * (n_kblocks if weights_outer else 1)
        _forward_taps(&all_taps, &row_taps, kernel_h, kernel_w, dilation_h, dilation_w, xs1,
                      xs2)
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <float **> _scratch_outs(&scratch, threadid())
            pix_dest = _scratch_dest(&scratch, threadid())
            ptile = task % n_ptiles
            n = (task // n_ptiles) % n_images
            if weights_outer:
                kblock_first = task // (n_ptiles * n_images)
                kblock_end = kblock_first + 1
            else:
                kblock_first = 0
                kblock_end = n_kblocks
            tile = tiles[ptile]
            tp = <int> tile.count
            inside = _forward_pixels(tile, n, n_pixels, Wo, K, stride_h, stride_w, pad_top,
                                     pad_left, xs0, xs1, xs2, ow_lo, ow_hi, dilation_w == 1,
                                     pix_off, pix_pos, pix_dest)
            taps = &row_taps if inside else &all_taps
            for kblock in range(kblock_first, kblock_end):
                k0 = kblock * block
                for i in range(tp):
                    outs[i] = obase + pix_dest[i] + k0 if pix_dest[i] >= 0 else NULL
                k.tile(nv, tp, xbase, pix_off, pix_pos, taps, kernel_w * C if inside else C,
                       zeros, wbase + kblock * block_stride, block, bbase + k0, False, relu,
                       outs, min(block, K - k0))
    finally:
        free(zeros)
        free(scratch.memory)
        free(tiles)
        _free_tap_table(&all_taps)
        _free_tap_table(&row_taps)


def conv2d_backward_data_phase_bf16(
    const unsigned short[:, :, :, ::1] dy,  # IN (N, Ho, Wo, K) bf16, K even
    const unsigned short[:, :, :, ::1] wpack,   # IN (C blocks, n taps, K/2, 2 * block) bf16
    const int[::1] tap_row,               # IN dy row offset of each tap
    const int[::1] tap_col,               # IN dy column offset of each tap
    float[:, :, :, ::1] dx,               # OUT (N, H, W, C)
    int row0, int col0, int stride_h, int stride_w,
    int nv, bint weights_outer, int n_threads,
):
    """conv2d_backward_data_phase with bf16 operands and float32 sums."""
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t n_images = dy.shape[0], Ho = dy.shape[1], Wo = dy.shape[2]
        int K = dy.shape[3]
        Py_ssize_t H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Hj = (H - row0 + stride_h - 1) // stride_h
        Py_ssize_t Wj = (W - col0 + stride_w - 1) // stride_w
        Py_ssize_t n_pixels = Hj * Wj
        int block = 16 * nv
        int tp_max = k.tile_pixels[0 if nv == 1 else 1]
        int tp
        Py_ssize_t n_cblocks = wpack.shape[0]
        int ntaps = tap_row.shape[0]
        Py_ssize_t n_ptiles, n_tasks
        Py_ssize_t task, n, ptile, cblock, c0, left, right
        _Tile *tiles = NULL
        _Tile tile
        int i
        const unsigned short *dybase = &dy[0, 0, 0, 0]
        const unsigned short *wbase = &wpack[0, 0, 0, 0]
        float *dxbase = &dx[0, 0, 0, 0]
        unsigned short *zeros
        fc_taps taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        float **outs
        long *pix_dest

    if n_images * n_pixels * n_cblocks == 0 or ntaps == 0:
        return
    if K % 2 or wpack.shape[1] != ntaps or wpack.shape[2] * 2 != K or wpack.shape[3] != 2 * block:
        raise ValueError("conv2d_backward_data_phase_bf16: dy needs an even channel count and "
                         "wpack the shape (C blocks, n taps, K/2, 2 * block)")
    zeros = <unsigned short *> calloc(K + 2, sizeof(unsigned short))
    scratch.memory = NULL
    taps.off = NULL
    taps.row = NULL
    try:
        if (zeros == NULL or _scratch_init(&scratch, n_threads, tp_max)
                or _tap_table(&taps, ntaps, Ho, Wo)):
            raise MemoryError()
        _phase_taps(&taps, &tap_row[0], &tap_col[0], Wo, K, Wj, &left, &right)
        tiles = _tile_table(Hj, Wj, left, right, tp_max, &n_ptiles)
        if tiles == NULL:
            raise MemoryError()
        n_tasks = n_images * n_ptiles * n_cblocks
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <float **> _scratch_outs(&scratch, threadid())
            pix_dest = _scratch_dest(&scratch, threadid())
            if weights_outer:
                ptile = task % n_ptiles
                n = (task // n_ptiles) % n_images
                cblock = task // (n_ptiles * n_images)
            else:
                cblock = task % n_cblocks
                ptile = (task // n_cblocks) % n_ptiles
                n = task // (n_cblocks * n_ptiles)
            tile = tiles[ptile]
            tp = <int> tile.count
            c0 = cblock * block
            _phase_pixels(tile, n, Ho, Wo, K, Wj, H, W, C, row0, col0, stride_h, stride_w,
                          pix_off, pix_pos, pix_dest)
            for i in range(tp):
                outs[i] = dxbase + pix_dest[i] + c0 if pix_dest[i] >= 0 else NULL
            k.tile(nv, tp, dybase, pix_off, pix_pos, &taps, K, zeros,
                   wbase + cblock * ntaps * K * block, block, NULL, False, False, outs,
                   min(block, C - c0))
    finally:
        free(zeros)
        free(scratch.memory)
        free(tiles)
        _free_tap_table(&taps)


def pair_columns_bf16(
    const float[:, :, :, ::1] x,          # IN (N, H, W, C)
    unsigned short[:, :, :, ::1] out,     # OUT (N, H, Wp, 2 * C2), C2 >= C
    int step, int offset, int distance, int n_threads,
):
    """out[n, h, j, (c, 0)] = bf16(x[n, h, i, c]) and out[n, h, j, (c, 1)] =
    bf16(x[n, h, i + distance, c]) with i = j * step - offset, zero where the column is
    outside x: each channel of two pixels ``distance`` apart as one 32-bit pair, the
    operand layout of the bf16 weight gradient (pixel pairs are its reduction). Channels
    past C are not written."""
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t Wp = out.shape[2], task, n, h, j, j0, j1
    if N * H * Wp * C == 0:
        return
    for task in prange(N * H, schedule="static", nogil=True, num_threads=n_threads):
        n = task // H
        h = task % H
        for j in range(Wp):
            j0 = j * step - offset
            j1 = j0 + distance
            k.interleave(&x[n, h, j0, 0] if 0 <= j0 < W else NULL,
                         &x[n, h, j1, 0] if 0 <= j1 < W else NULL, C, &out[n, h, j, 0])


def conv2d_backward_weights_bf16(
    const unsigned short[:, :, :, ::1] xpairs,  # IN (N, H, Wp, 2C): pair_columns_bf16(x)
    const unsigned short[:, :, :, ::1] dypairs,  # IN (N, Ho, ceil(Wo/2), 2 Kp)
    float[:, :, :, :, ::1] partial,       # OUT (n_chunks, R, S, C, Kp)
    int stride_h, int stride_w, int pad_top,
    int dilation_h, int dilation_w,
    int nv, int images_per_step, int n_threads,
):
    """conv2d_backward_weights with bf16 operands, the pixels of each dy row taken in
    pairs (2q, 2q + 1).

    ``xpairs`` pairs each input column j of the padded input with column j + stride_w
    (pair_columns_bf16 with offset pad_left, distance stride_w), so output pixels 2q and
    2q + 1 read tap (r, s) at the one pair of column 2q*stride_w + s*dilation_w;
    ``dypairs`` pairs output columns (2q, 2q + 1), the last with zero when Wo is odd.
    Rows whose tap falls into padding are skipped; columns in padding read zero pairs.
    Tasks, chunks and steps as the float32 driver: the same result for any thread count.
    With fewer than FC_TILE_CHANNELS channels and no column dilation (a first layer's few
    channels), a kernel row's S columns' pairs lie side by side in xpairs, as the (s, c)
    rows of dw do in partial: a task takes FC_BF16_WGRAD_ROWS of the row's S * C (tap,
    channel) values at a time instead of one tap's channels.
    """
    cdef:
        const fc_conv_bf16_table *kt = _bf16_table()
        Py_ssize_t n_images = xpairs.shape[0], H = xpairs.shape[1], Wp = xpairs.shape[2]
        Py_ssize_t C = xpairs.shape[3] // 2
        Py_ssize_t Ho = dypairs.shape[1], Wq = dypairs.shape[2], Kp = dypairs.shape[3] // 2
        Py_ssize_t n_chunks = partial.shape[0]
        int kernel_h = partial.shape[1], kernel_w = partial.shape[2]
        int block = 16 * nv
        _WgradLayout layout = _wgrad_layout(C, kernel_w, dilation_w)
        int task_w = layout.task_w, rows = layout.rows
        Py_ssize_t n_values = layout.n_values, n_ctiles = layout.n_ctiles
        Py_ssize_t n_kblocks = Kp // block
        Py_ssize_t chunk_len = (n_images + n_chunks - 1) // n_chunks
        Py_ssize_t tiles_per_chunk = kernel_h * task_w * n_ctiles * n_kblocks
        Py_ssize_t n_tasks = n_chunks * tiles_per_chunk
        Py_ssize_t step, n_steps, task, rest, chunk, ctile, kblock, c, c0, k0
        Py_ssize_t n, n_first, n_end, oh, ih
        Py_ssize_t rows_per_thread
        int r, s, tc, nrows
        const unsigned short *xbase = &xpairs[0, 0, 0, 0]
        const unsigned short *dybase = &dypairs[0, 0, 0, 0]
        float *pbase = &partial[0, 0, 0, 0, 0]
        const unsigned short **xrows
        const unsigned short **dyrows
        int *rowlen
        float *tile
        const unsigned short **all_xrows
        const unsigned short **all_dyrows
        int *all_rowlen

    if n_tasks == 0:
        return
    if Kp % block or partial.shape[4] != Kp or partial.shape[3] != C:
        raise ValueError("conv2d_backward_weights_bf16: partial must be (chunks, R, S, C, Kp) "
                         "with Kp a multiple of the block")
    if 2 * (Wq - 1) * stride_w + (kernel_w - 1) * dilation_w >= Wp:
        raise ValueError("conv2d_backward_weights_bf16: xpairs is too narrow for dy")
    images_per_step = max(1, min(images_per_step, chunk_len))
    n_steps = (chunk_len + images_per_step - 1) // images_per_step
    rows_per_thread = per_thread(images_per_step * Ho, sizeof(void *))
    all_xrows = <const unsigned short **> malloc(n_threads * rows_per_thread * sizeof(void *))
    all_dyrows = <const unsigned short **> malloc(n_threads * rows_per_thread * sizeof(void *))
    all_rowlen = <int *> malloc(n_threads * rows_per_thread * sizeof(int))
    try:
        if all_xrows == NULL or all_dyrows == NULL or all_rowlen == NULL:
            raise MemoryError()
        for step in range(n_steps):
            for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
                xrows = all_xrows + threadid() * rows_per_thread
                dyrows = all_dyrows + threadid() * rows_per_thread
                rowlen = all_rowlen + threadid() * rows_per_thread
                kblock = task % n_kblocks
                rest = task // n_kblocks
                ctile = rest % n_ctiles
                rest = rest // n_ctiles
                s = rest % task_w
                rest = rest // task_w
                r = rest % kernel_h
                chunk = rest // kernel_h
                c0 = ctile * rows   # whole rows: the (s, c) values from c0, with s = 0
                tc = <int> min(rows, n_values - c0)
                k0 = kblock * block
                tile = pbase + (((chunk * kernel_h + r) * kernel_w + s) * C + c0) * Kp + k0
                if step == 0:
                    for c in range(tc):
                        memset(tile + c * Kp, 0, block * sizeof(float))
                n_first = chunk * chunk_len + step * images_per_step
                n_end = min(n_first + images_per_step, (chunk + 1) * chunk_len, n_images)
                nrows = 0
                for n in range(n_first, n_end):
                    for oh in range(Ho):
                        ih = oh * stride_h - pad_top + r * dilation_h
                        if ih < 0 or ih >= H:
                            continue
                        xrows[nrows] = xbase + (((n * H + ih) * Wp + s * dilation_w) * C
                                                + c0) * 2
                        dyrows[nrows] = dybase + ((n * Ho + oh) * Wq * Kp + k0) * 2
                        rowlen[nrows] = <int> Wq
                        nrows = nrows + 1
                if nrows > 0:
                    kt.wgrad_tile(nv, tc, xrows, dyrows, rowlen, nrows, 4 * stride_w * C,
                                  2 * Kp, tile, Kp)
    finally:
        free(all_xrows)
        free(all_dyrows)
        free(all_rowlen)


def pack_weights_bf16(
    const float[:, :, ::1] w,             # IN (T, A, B)
    const int[::1] taps,                  # IN which of the T taps to pack, in order
    unsigned short[:, :, :, ::1] packed,  # OUT (blocks, len(taps), pairs, 2 * block)
    bint transpose, int n_threads,
):
    """The bf16 kernels' weights: pairs of the reduction's values, in output blocks,
    zero-padded past the last output and the last reduction value.

    transpose=False (forward: A the reduction, B the outputs): packed[b, i, p, 2j + e] =
    bf16(w[taps[i], 2p + e, b * block + j]); transpose=True (data gradient: B the
    reduction, A the outputs): packed[b, i, p, 2j + e] = bf16(w[taps[i], b * block + j,
    2p + e]).
    """
    cdef:
        const fc_conv_bf16_table *k = _bf16_table()
        Py_ssize_t n_taps = taps.shape[0], A = w.shape[1], B = w.shape[2]
        Py_ssize_t n_blocks = packed.shape[0], pairs = packed.shape[2]
        Py_ssize_t block = packed.shape[3] // 2
        Py_ssize_t outputs = A if transpose else B
        Py_ssize_t task, b, t, p, j, first, width
        unsigned short *dst
        unsigned int *dst32
        unsigned int *row32
        unsigned short *rows = NULL
    if n_blocks * n_taps * pairs == 0:
        return
    if transpose:
        rows = <unsigned short *> malloc(n_threads * per_thread(2 * pairs, 2) * 2)
        if rows == NULL:
            raise MemoryError()
    try:
        for task in prange(n_blocks * n_taps, schedule="static", nogil=True,
                           num_threads=n_threads):
            b = task // n_taps
            t = taps[task % n_taps]
            first = b * block
            width = min(block, outputs - first)
            dst = &packed[b, task % n_taps, 0, 0]
            if transpose:
                # output first + j's reduction values are one contiguous row of w: round
                # it to bf16 pairs, then place each pair in its column
                dst32 = <unsigned int *> dst
                row32 = <unsigned int *> (rows + threadid() * per_thread(2 * pairs, 2))
                if width < block:
                    memset(dst, 0, pairs * 2 * block * sizeof(unsigned short))
                for j in range(width):
                    row32[pairs - 1] = 0
                    k.to_bf16(&w[t, first + j, 0], B, <unsigned short *> row32)
                    for p in range(pairs):
                        dst32[p * block + j] = row32[p]
            else:
                for p in range(pairs):
                    k.interleave(&w[t, 2 * p, first] if 2 * p < A else NULL,
                                 &w[t, 2 * p + 1, first] if 2 * p + 1 < A else NULL,
                                 width, dst + p * 2 * block)
                    if width < block:
                        memset(dst + p * 2 * block + 2 * width, 0,
                               2 * (block - width) * sizeof(unsigned short))
    finally:
        free(rows)
