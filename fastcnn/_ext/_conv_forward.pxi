# Included by _conv.pyx: the forward pass.


cdef inline bint _forward_pixels(_Tile tile, Py_ssize_t n, Py_ssize_t n_pixels, Py_ssize_t Wo,
                                 Py_ssize_t K, int stride_h, int stride_w, int pad_top,
                                 int pad_left, Py_ssize_t xs0, Py_ssize_t xs1, Py_ssize_t xs2,
                                 Py_ssize_t ow_lo, Py_ssize_t ow_hi, bint rows_possible,
                                 long *pix_off, int *pix_pos, long *pix_dest) noexcept nogil:
    """A forward tile's pixels in image n, for the kernel: each one's input offset and grid
    position, and its output offset (-1 for pixels a shifted tile recomputes from the one
    before: not stored). True when ``rows_possible`` and every pixel's kernel rows lie
    inside the image horizontally (then a kernel row can be one tap)."""
    cdef _Pixel px
    cdef int i, row0, col0
    cdef bint inside = rows_possible
    px.row = tile.start // Wo
    px.col = tile.start % Wo
    for i in range(<int> tile.count):
        row0 = px.row * stride_h - pad_top
        col0 = px.col * stride_w - pad_left
        pix_pos[i] = row0
        pix_pos[tile.count + i] = col0
        pix_off[i] = n * xs0 + row0 * xs1 + col0 * xs2
        pix_dest[i] = (n * n_pixels + px.row * Wo + px.col) * K if i >= tile.skip else -1
        if px.col < ow_lo or px.col > ow_hi:
            inside = False
        px = _next_pixel(px, tile.step, Wo)
    return inside


cdef void _forward_taps(fc_taps *all_taps, fc_taps *row_taps, int kernel_h, int kernel_w,
                        int dilation_h, int dilation_w, Py_ssize_t xs1,
                        Py_ssize_t xs2) noexcept nogil:
    """The forward pass's tap tables for an input of row stride xs1 and pixel stride xs2
    (in elements): every (r, s), and every kernel row as one tap of S*C contiguous values
    (whole-row tiles only)."""
    cdef int r, s, i
    for r in range(kernel_h):
        for s in range(kernel_w):
            i = r * kernel_w + s
            all_taps.off[i] = r * dilation_h * xs1 + s * dilation_w * xs2
            all_taps.row[i] = r * dilation_h
            all_taps.col[i] = s * dilation_w
            all_taps.ids[i] = i
        row_taps.off[r] = r * dilation_h * xs1
        row_taps.row[r] = r * dilation_h
        row_taps.col[r] = 0
        row_taps.ids[r] = r


def conv2d_forward(
    const floating[:, :, :, :] x,         # IN (N, H, W, C), channels contiguous
    const floating[:, :, :, ::1] wpack,   # IN (K blocks, R*S, C, block) or (1, R*S, C, K)
    const floating[::1] bias,             # IN (K blocks * block width,), zero-padded
    floating[:, :, :, ::1] out,           # IN/OUT (N, Ho, Wo, K)
    int kernel_h, int kernel_w,
    int stride_h, int stride_w,
    int pad_top, int pad_left,
    int dilation_h, int dilation_w,
    bint relu, int isa, int nv, int block, bint weights_outer, bint accumulate,
    int n_threads,
):
    """out = conv(x, w) + bias (then max(., 0) when ``relu``), one pixel tile per task.

    With ``accumulate``, out = conv(x, w) + out instead (bias not read; then the relu):
    a convolution over many input channels can run in slices of them.

    ``wpack`` holds the weights in blocks of ``block`` output channels, each block's rows
    contiguous; or, when K is a multiple of the block, it may be the (R, S, C, K) weights
    themselves (shape (1, R*S, C, K)), each block then read at a row stride of K.

    Each task runs its tile against every output-channel block, or, with
    ``weights_outer`` (weights too big to stay in cache, few pixels: a dense layer), a
    task is one (block, tile) pair and each thread's tasks go through one block at a time.

    Where output rows split into whole tiles, a tile is a strip of one output row;
    otherwise tiles run over the flattened image. The kernel gets each pixel's origin and
    a table of taps: every (r, s), or, for a tile whose receptive fields lie inside the
    image horizontally (no horizontal dilation, pixels contiguous), every kernel row as one
    tap of S*C contiguous values.
    """
    cdef _ConvArgs a
    if x.strides[3] != sizeof(floating):
        raise ValueError("conv2d_forward needs x's channels contiguous")
    a.n_images, a.H, a.W, a.C = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    a.xs0 = x.strides[0] // sizeof(floating)
    a.xs1 = x.strides[1] // sizeof(floating)
    a.xs2 = x.strides[2] // sizeof(floating)
    a.Ho, a.Wo, a.K = out.shape[1], out.shape[2], out.shape[3]
    a.n_kblocks = wpack.shape[0] if wpack.shape[3] == block else wpack.shape[3] // block
    a.w_last = wpack.shape[3]
    a.kernel_h, a.kernel_w, a.stride_h, a.stride_w = kernel_h, kernel_w, stride_h, stride_w
    a.pad_top, a.pad_left, a.dilation_h, a.dilation_w = pad_top, pad_left, dilation_h, dilation_w
    a.relu, a.isa, a.nv, a.block = relu, isa, nv, block
    a.weights_outer, a.accumulate = weights_outer, accumulate
    if a.n_images * a.Ho * a.Wo * a.n_kblocks == 0:
        return
    if _forward_run(&a, &x[0, 0, 0, 0], &wpack[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                    n_threads):
        raise MemoryError()


cdef int _forward_run(const _ConvArgs *a, const floating *xbase, const floating *wbase,
                      const floating *bbase, floating *obase, int n_threads) noexcept nogil:
    """conv2d_forward on the arrays at these addresses, as ``a`` describes them (a
    non-empty output): 0, or -1 where memory ran out."""
    cdef:
        Py_ssize_t n_images = a.n_images, H = a.H, W = a.W
        int C = <int> a.C
        Py_ssize_t xs0 = a.xs0, xs1 = a.xs1, xs2 = a.xs2
        Py_ssize_t Ho = a.Ho, Wo = a.Wo, K = a.K
        int kernel_h = a.kernel_h, kernel_w = a.kernel_w
        int stride_h = a.stride_h, stride_w = a.stride_w
        int pad_top = a.pad_top, pad_left = a.pad_left
        int dilation_h = a.dilation_h, dilation_w = a.dilation_w
        bint relu = a.relu, weights_outer = a.weights_outer, accumulate = a.accumulate
        int isa = a.isa, nv = a.nv, block = a.block
        Py_ssize_t n_pixels = Ho * Wo
        int tp_max = _tile_pixels(isa, nv)
        int tp
        bint packed = a.w_last == block
        Py_ssize_t n_kblocks = a.n_kblocks
        int ntaps = kernel_h * kernel_w
        int patch_len = ntaps * C
        # a weight row's stride, and the distance from one block to the next
        long ldw = block if packed else a.w_last
        long block_stride = patch_len * block if packed else block
        Py_ssize_t n_ptiles, n_tasks
        Py_ssize_t task, n, ptile, kblock, kblock_first, kblock_end
        Py_ssize_t k0
        _Tile *tiles = NULL
        _Tile tile
        int i, status = 0
        bint inside
        floating *zeros
        fc_taps all_taps, row_taps
        const fc_taps *taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        floating **outs
        long *pix_dest
        Py_ssize_t ow_lo, ow_hi
        const fc_conv_forward_table_f32 *k32 = NULL
        const fc_conv_forward_table_f64 *k64 = NULL

    if floating is float:
        k32 = fc_conv_forward_table_f32_for(isa)
    else:
        k64 = fc_conv_forward_table_f64_for(isa)
    _row_columns(W, Wo, kernel_w, stride_w, pad_left, dilation_w, &ow_lo, &ow_hi)
    zeros = <floating *> calloc(kernel_w * C, sizeof(floating))
    scratch.memory = NULL
    all_taps.off = row_taps.off = NULL
    all_taps.row = row_taps.row = NULL
    # columns ow < ow_lo and ow > ow_hi have kernel rows reaching off the image
    tiles = _tile_table(Ho, Wo, ow_lo, Wo - 1 - ow_hi, tp_max, &n_ptiles)
    if (zeros == NULL or _scratch_init(&scratch, n_threads, tp_max)
            or tiles == NULL
            or _tap_table(&all_taps, ntaps, H, W) or _tap_table(&row_taps, kernel_h, H, W)):
        status = -1
    else:
        n_tasks = n_images * n_ptiles * (n_kblocks if weights_outer else 1)
        _forward_taps(&all_taps, &row_taps, kernel_h, kernel_w, dilation_h, dilation_w, xs1,
                      xs2)
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <floating **> _scratch_outs(&scratch, threadid())
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
                                     pad_left, xs0, xs1, xs2, ow_lo, ow_hi,
                                     dilation_w == 1 and xs2 == C, pix_off, pix_pos, pix_dest)
            taps = &row_taps if inside else &all_taps
            for kblock in range(kblock_first, kblock_end):
                k0 = kblock * block
                for i in range(tp):
                    outs[i] = obase + pix_dest[i] + k0 if pix_dest[i] >= 0 else NULL
                if (inside and nv == 1 and stride_w == 1
                        and _slide_tile(k32, k64, kernel_w, tp, xbase, pix_off, pix_pos,
                                        taps, C, wbase + kblock * block_stride, ldw,
                                        bbase + k0, accumulate, relu, outs,
                                        min(block, K - k0))):
                    continue
                _forward_tile(k32, k64, nv, tp, xbase, pix_off, pix_pos, taps,
                              kernel_w * C if inside else C, zeros,
                              wbase + kblock * block_stride, ldw, bbase + k0, accumulate,
                              relu, outs, min(block, K - k0))
    free(zeros)
    free(scratch.memory)
    free(tiles)
    _free_tap_table(&all_taps)
    _free_tap_table(&row_taps)
    return status



def pooled_forward_applies(Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t Wo,
                           int kernel_w, int stride_w, int pad_left, int dilation_w, int isa,
                           int nv):
    """Whether conv2d_forward_pooled can run this convolution: a 2x2 output at least,
    whose rows split into strips (not tiles over the flattened grid)."""
    cdef Py_ssize_t ow_lo, ow_hi
    cdef bint borders
    cdef int tp_max = _tile_pixels(isa, nv)
    _row_columns(W, Wo, kernel_w, stride_w, pad_left, dilation_w, &ow_lo, &ow_hi)
    if Ho < 2 or Wo < 2:
        return False
    return _row_layout(Ho, Wo, ow_lo, Wo - 1 - ow_hi, tp_max, &borders) > 0


def conv2d_forward_pooled(
    const floating[:, :, :, :] x,         # IN (N, H, W, C), channels contiguous
    const floating[:, :, :, ::1] wpack,   # IN (K blocks, R*S, C, block)
    const floating[::1] bias,             # IN (K blocks * block,), zero-padded
    floating[:, :, :, ::1] out,           # OUT (N, Ho // 2, Wo // 2, K)
    Py_ssize_t Ho, Py_ssize_t Wo,         # the convolution's output size
    int kernel_h, int kernel_w,
    int stride_h, int stride_w,
    int pad_top, int pad_left,
    int dilation_h, int dilation_w,
    bint relu, bint average, int isa, int nv, int block,
    int n_threads,
):
    """conv2d_forward (then relu) and the 2x2 pooling with stride 2 after it, max or (with
    ``average``) mean, in one pass (prediction), where pooled_forward_applies: the same
    values as the two kernels one after the other, the convolution's output never leaving
    the cache.

    A task is a few pooled rows: the convolution rows under them in the thread's scratch,
    then the pooling kernel over each pair. The rows' pixels go to the forward kernels in the
    strips of conv2d_forward's tiling (the same tiles, so the same kernels and the same
    bits); its border columns, which it tiles down the columns, make tiles of their own
    here (each pixel's taps the same, so again the same bits).
    """
    cdef _ConvArgs a
    cdef int status
    if x.strides[3] != sizeof(floating):
        raise ValueError("conv2d_forward_pooled needs x's channels contiguous")
    a.n_images, a.H, a.W, a.C = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    a.xs0 = x.strides[0] // sizeof(floating)
    a.xs1 = x.strides[1] // sizeof(floating)
    a.xs2 = x.strides[2] // sizeof(floating)
    a.Ho, a.Wo, a.Hp, a.Wp, a.K = Ho, Wo, out.shape[1], out.shape[2], out.shape[3]
    a.n_kblocks, a.w_last = wpack.shape[0], wpack.shape[3]
    a.kernel_h, a.kernel_w, a.stride_h, a.stride_w = kernel_h, kernel_w, stride_h, stride_w
    a.pad_top, a.pad_left, a.dilation_h, a.dilation_w = pad_top, pad_left, dilation_h, dilation_w
    a.relu, a.average, a.isa, a.nv, a.block = relu, average, isa, nv, block
    if a.n_images * a.Hp * a.Wp * a.K == 0:
        return
    status = _forward_pooled_run(&a, &x[0, 0, 0, 0], &wpack[0, 0, 0, 0], &bias[0],
                                 &out[0, 0, 0, 0], n_threads)
    if status == -2:
        raise ValueError("conv2d_forward_pooled cannot tile this convolution")
    if status:
        raise MemoryError()


cdef int _forward_pooled_run(const _ConvArgs *a, const floating *xbase, const floating *wbase,
                             const floating *bbase, floating *obase,
                             int n_threads) noexcept nogil:
    """conv2d_forward_pooled on the arrays at these addresses, as ``a`` describes them (a
    non-empty output): 0, -1 where memory ran out, -2 for rows that do not split into
    strips."""
    cdef:
        Py_ssize_t n_images = a.n_images, H = a.H, W = a.W
        int C = <int> a.C
        Py_ssize_t xs0 = a.xs0, xs1 = a.xs1, xs2 = a.xs2
        Py_ssize_t Ho = a.Ho, Wo = a.Wo, Hp = a.Hp, Wp = a.Wp, K = a.K
        int kernel_h = a.kernel_h, kernel_w = a.kernel_w
        int stride_h = a.stride_h, stride_w = a.stride_w
        int pad_top = a.pad_top, pad_left = a.pad_left
        int dilation_h = a.dilation_h, dilation_w = a.dilation_w
        bint relu = a.relu, average = a.average
        int isa = a.isa, nv = a.nv, block = a.block
        Py_ssize_t n_pixels = Ho * Wo
        int tp_max = _tile_pixels(isa, nv)
        Py_ssize_t n_kblocks = a.n_kblocks
        int ntaps = kernel_h * kernel_w
        long block_stride = ntaps * C * block
        Py_ssize_t ow_lo, ow_hi, left, right, inner, n_strips, first
        bint borders
        Py_ssize_t n_border
        # pooled rows per task: border tiles as tall as conv2d_forward's
        Py_ssize_t rows_per_task = max(1, tp_max // 2)
        Py_ssize_t blocks = (Hp + rows_per_task - 1) // rows_per_task
        Py_ssize_t n_tasks = n_images * blocks
        Py_ssize_t conv_len = per_thread(2 * rows_per_task * Wo * K, sizeof(floating))
        Py_ssize_t task, n, p0, nr, q, strip, kblock, k0, col, row_strips, border
        _Window2x2 window
        _Tile tile
        int i, j, tp, status = 0
        bint inside
        floating *zeros
        floating *conv_all = NULL
        floating *conv
        fc_taps all_taps, row_taps
        const fc_taps *taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        floating **outs
        long *pix_dest
        const fc_conv_forward_table_f32 *k32 = NULL
        const fc_conv_forward_table_f64 *k64 = NULL
        const fc_pool_table_f32 *p32 = NULL
        const fc_pool_table_f64 *p64 = NULL

    if floating is float:
        k32 = fc_conv_forward_table_f32_for(isa)
        p32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_conv_forward_table_f64_for(isa)
        p64 = fc_pool_table_f64_for(isa)
    _row_columns(W, Wo, kernel_w, stride_w, pad_left, dilation_w, &ow_lo, &ow_hi)
    left, right = ow_lo, Wo - 1 - ow_hi
    n_strips = _row_layout(Ho, Wo, left, right, tp_max, &borders)
    if n_strips == 0:
        return -2
    if not borders:
        left = right = 0
    inner = Wo - left - right
    n_border = 2 * (left + right)
    _window_2x2(&window, Wo, K)     # in the scratch's rows of Wo pixels
    zeros = <floating *> calloc(kernel_w * C, sizeof(floating))
    # each thread's convolution rows, then the max pool's scratch
    conv_all = <floating *> malloc(n_threads * 2 * conv_len * sizeof(floating))
    scratch.memory = NULL
    all_taps.off = row_taps.off = NULL
    all_taps.row = row_taps.row = NULL
    if (zeros == NULL or conv_all == NULL or _scratch_init(&scratch, n_threads, tp_max)
            or _tap_table(&all_taps, ntaps, H, W) or _tap_table(&row_taps, kernel_h, H, W)):
        status = -1
    else:
        _forward_taps(&all_taps, &row_taps, kernel_h, kernel_w, dilation_h, dilation_w, xs1,
                      xs2)
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <floating **> _scratch_outs(&scratch, threadid())
            pix_dest = _scratch_dest(&scratch, threadid())
            conv = conv_all + threadid() * 2 * conv_len
            p0 = (task % blocks) * rows_per_task
            n = task // blocks
            nr = min(rows_per_task, Hp - p0)
            row_strips = 2 * nr * n_strips
            border = nr * n_border
            # the strips of each row, then (tiling them apart) the border columns
            for strip in range(row_strips + (border + tp_max - 1) // tp_max):
                if strip < row_strips:
                    j = <int> (strip // n_strips)
                    first = left + (strip % n_strips) * inner // n_strips
                    tp = <int> (left + (strip % n_strips + 1) * inner // n_strips - first)
                    # (assigned whole: a struct assigned field by field would be shared
                    # by the threads)
                    tile = _Tile(start=(2 * p0 + j) * Wo + first, step=1, count=tp, skip=0)
                    inside = _forward_pixels(tile, n, n_pixels, Wo, K, stride_h, stride_w,
                                             pad_top, pad_left, xs0, xs1, xs2, ow_lo, ow_hi,
                                             dilation_w == 1 and xs2 == C, pix_off, pix_pos,
                                             pix_dest)
                    for i in range(tp):
                        pix_dest[i] = (j * Wo + first + i) * K
                else:
                    # down each border column in turn
                    first = (strip - row_strips) * tp_max
                    tp = min(tp_max, <int> (border - first))
                    for i in range(tp):
                        j = <int> ((first + i) % (2 * nr))
                        col = (first + i) // (2 * nr)
                        col = col if col < left else Wo - right + col - left
                        pix_pos[i] = <int> ((2 * p0 + j) * stride_h - pad_top)
                        pix_pos[tp + i] = <int> (col * stride_w - pad_left)
                        pix_off[i] = n * xs0 + pix_pos[i] * xs1 + pix_pos[tp + i] * xs2
                        pix_dest[i] = (j * Wo + col) * K
                    inside = False
                taps = &row_taps if inside else &all_taps
                for kblock in range(n_kblocks):
                    k0 = kblock * block
                    for i in range(tp):
                        outs[i] = conv + pix_dest[i] + k0
                    if (inside and nv == 1 and stride_w == 1
                            and _slide_tile(k32, k64, kernel_w, tp, xbase, pix_off, pix_pos,
                                            taps, C, wbase + kblock * block_stride, block,
                                            bbase + k0, False, relu, outs,
                                            min(block, K - k0))):
                        continue
                    _forward_tile(k32, k64, nv, tp, xbase, pix_off, pix_pos, taps,
                                  kernel_w * C if inside else C, zeros,
                                  wbase + kblock * block_stride, block, bbase + k0, False,
                                  relu, outs, min(block, K - k0))
            for q in range(nr):
                _pool_2x2_row(p32, p64, average, conv + 2 * q * Wo * K, K, Wp, &window.window,
                              conv + conv_len, obase + ((n * Hp + p0 + q) * Wp) * K)
    free(zeros)
    free(conv_all)
    free(scratch.memory)
    _free_tap_table(&all_taps)
    _free_tap_table(&row_taps)
    return status
