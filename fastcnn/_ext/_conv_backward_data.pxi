# Included by _conv.pyx: the data gradient, three ways (the plan picks one): stride phases
# through the forward tile, a columns array added back image by image, and kernel rows
# added in place for few input channels.


cdef inline void _add_run(const fc_conv_runs_table_f32 *r32, const fc_conv_runs_table_f64 *r64,
                          floating *dst, const floating *src, long n) noexcept nogil:
    if floating is float:
        r32.add_run(dst, src, n)
    else:
        r64.add_run(dst, src, n)


cdef inline void _phase_pixels(_Tile tile, Py_ssize_t n, Py_ssize_t Ho, Py_ssize_t Wo,
                               Py_ssize_t K, Py_ssize_t Wj, Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t C, int row0, int col0, int stride_h, int stride_w,
                               long *pix_off, int *pix_pos, long *pix_dest) noexcept nogil:
    """A data-gradient tile's pixels (j, l) of one stride phase in image n: each one's dy
    offset and position (j, l) on dy's grid, and its dx offset (row0 + stride_h*j,
    col0 + stride_w*l), -1 for pixels a shifted tile recomputes (not stored)."""
    cdef _Pixel px
    cdef int i
    px.row = tile.start // Wj
    px.col = tile.start % Wj
    for i in range(<int> tile.count):
        pix_pos[i] = px.row
        pix_pos[tile.count + i] = px.col
        pix_off[i] = ((n * Ho + px.row) * Wo + px.col) * K
        pix_dest[i] = ((((n * H + row0 + px.row * stride_h) * W + col0 + px.col * stride_w) * C)
                       if i >= tile.skip else -1)
        px = _next_pixel(px, tile.step, Wj)


cdef void _phase_taps(fc_taps *taps, const int *tap_row, const int *tap_col,
                      Py_ssize_t Wo, Py_ssize_t K, Py_ssize_t Wj, Py_ssize_t *left,
                      Py_ssize_t *right) noexcept nogil:
    """A stride phase's tap table on dy (Wo pixels a row, K channels), and how many of its
    Wj columns at the left and at the right have taps reaching off dy (jw + min_col < 0
    or jw + max_col >= Wo): those get tiles of their own."""
    cdef int t, min_col = 0, max_col = 0
    for t in range(taps.ntaps):
        taps.off[t] = (tap_row[t] * Wo + tap_col[t]) * K
        taps.row[t] = tap_row[t]
        taps.col[t] = tap_col[t]
        taps.ids[t] = t
        min_col = min(min_col, tap_col[t]) if t else tap_col[t]
        max_col = max(max_col, tap_col[t]) if t else tap_col[t]
    left[0] = min(max(-min_col, 0), Wj)
    right[0] = min(max(Wj - (Wo - max_col), 0), Wj - left[0])



cdef int _phase_row_taps(fc_taps *row_taps, const fc_taps *taps) noexcept nogil:
    """For a phase whose taps come in kernel rows of consecutive columns (stride 1, no
    dilation: (r, s) in order with the dy column rising with s), one tap per kernel row
    in ``row_taps`` (allocated for taps.ntaps taps) for the sliding tile; returns the
    kernel width, or 0 when the taps are not so."""
    cdef int width = 1, t, g
    while width < taps.ntaps and taps.row[width] == taps.row[0]:
        width += 1
    if taps.ntaps % width:
        return 0
    for t in range(taps.ntaps):
        g = t // width
        if (taps.row[t] != taps.row[g * width]
                or taps.col[t] != taps.col[g * width] + t % width):
            return 0
    row_taps.ntaps = taps.ntaps // width
    row_taps.rows = taps.rows
    row_taps.cols = taps.cols
    for g in range(row_taps.ntaps):
        row_taps.off[g] = taps.off[g * width]
        row_taps.row[g] = taps.row[g * width]
        row_taps.col[g] = taps.col[g * width]
        row_taps.ids[g] = g
    return width


def conv2d_backward_data_phase(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, K)
    const floating[:, :, :, ::1] wpack,   # IN (C blocks, n taps, K, block width)
    const int[::1] tap_row,               # IN dy row offset of each tap
    const int[::1] tap_col,               # IN dy column offset of each tap
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C)
    int row0, int col0, int stride_h, int stride_w,
    int isa, int nv, bint weights_outer, int n_threads,
):
    """Data gradient for the input pixels (row0 + stride_h*j, col0 + stride_w*l).

    One (pixel tile, channel block) per task; consecutive tasks share the tile, or with
    ``weights_outer`` (big weights, few pixels) the channel block.

    Within one stride phase every pixel sees the same taps of the (180-degree rotated,
    channel-transposed) filter, at dy offset (j + tap_row[t], l + tap_col[t]); offsets
    outside dy read zeros, which is the zero-padded delta without materialising it.
    """
    cdef:
        Py_ssize_t n_images = dy.shape[0], Ho = dy.shape[1], Wo = dy.shape[2]
        int K = dy.shape[3]
        Py_ssize_t H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Hj = (H - row0 + stride_h - 1) // stride_h
        Py_ssize_t Wj = (W - col0 + stride_w - 1) // stride_w
        Py_ssize_t n_pixels = Hj * Wj
        int block = wpack.shape[3]
        int tp_max = _tile_pixels(isa, nv)
        int tp
        Py_ssize_t n_cblocks = wpack.shape[0]
        int ntaps = tap_row.shape[0]
        Py_ssize_t n_ptiles, n_tasks
        Py_ssize_t task, n, ptile, cblock, c0, left, right
        _Tile *tiles = NULL
        _Tile tile
        int i
        const floating *dybase = &dy[0, 0, 0, 0]
        const floating *wbase = &wpack[0, 0, 0, 0]
        floating *dxbase = &dx[0, 0, 0, 0]
        floating *zeros
        fc_taps taps, row_taps
        int slide_width = 0
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        floating **outs
        long *pix_dest
        const fc_conv_forward_table_f32 *k32 = NULL
        const fc_conv_forward_table_f64 *k64 = NULL

    if n_images * n_pixels * n_cblocks == 0 or ntaps == 0:
        return
    if floating is float:
        k32 = fc_conv_forward_table_f32_for(isa)
    else:
        k64 = fc_conv_forward_table_f64_for(isa)
    zeros = <floating *> calloc(K, sizeof(floating))
    scratch.memory = NULL
    taps.off = row_taps.off = NULL
    taps.row = row_taps.row = NULL
    try:
        if (zeros == NULL or _scratch_init(&scratch, n_threads, tp_max)
                or _tap_table(&taps, ntaps, Ho, Wo) or _tap_table(&row_taps, ntaps, Ho, Wo)):
            raise MemoryError()
        _phase_taps(&taps, &tap_row[0], &tap_col[0], Wo, K, Wj, &left, &right)
        if nv == 1 and stride_w == 1:
            slide_width = _phase_row_taps(&row_taps, &taps)
        tiles = _tile_table(Hj, Wj, left, right, tp_max, &n_ptiles)
        if tiles == NULL:
            raise MemoryError()
        n_tasks = n_images * n_ptiles * n_cblocks
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <floating **> _scratch_outs(&scratch, threadid())
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
            if slide_width and _slide_tile(k32, k64, slide_width, tp, dybase, pix_off, pix_pos,
                                           &row_taps, K, wbase + cblock * ntaps * K * block,
                                           block, NULL, False, False, outs,
                                           min(block, C - c0)):
                continue
            _forward_tile(k32, k64, nv, tp, dybase, pix_off, pix_pos, &taps, K, zeros,
                          wbase + cblock * ntaps * K * block, block, NULL, False, False, outs,
                          min(block, C - c0))
    finally:
        free(zeros)
        free(scratch.memory)
        free(tiles)
        _free_tap_table(&taps)
        _free_tap_table(&row_taps)


def col2im_add(
    const floating[:, :, :, ::1] cols,    # IN (N, Ho, Wo, R*S*C): each pixel's (R, S, C) terms
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int kernel_h, int kernel_w,
    int stride_h, int stride_w,
    int pad_top, int pad_left,
    int dilation_h, int dilation_w,
    int isa, int n_threads,
):
    """dx = 0, then cols[n, oh, ow, (r, s, c)] is added to the input pixel that tap (r, s)
    of output pixel (oh, ow) reads; taps falling into padding are dropped.

    The data gradient of a convolution whose ``cols`` are dy times the transposed filter.
    One image per task, its output pixels added in order, so the sums do not depend on
    the thread count. With ``dilation_w == 1`` the taps of one filter row cover
    consecutive input pixels, so each row's terms are one contiguous run.
    """
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = cols.shape[1], Wo = cols.shape[2]
        Py_ssize_t image_size = H * W * C, row_terms = kernel_w * C
        Py_ssize_t n, oh, ow, ih, iw, iw0
        int r, s, s_first, s_end
        floating *dximg
        const floating *src
        const floating *colbase
        const fc_conv_runs_table_f32 *r32 = NULL
        const fc_conv_runs_table_f64 *r64 = NULL

    if n_images == 0 or image_size == 0:
        return
    if floating is float:
        r32 = fc_conv_runs_table_f32_for(isa)
    else:
        r64 = fc_conv_runs_table_f64_for(isa)
    colbase = &cols[0, 0, 0, 0]
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        dximg = &dx[n, 0, 0, 0]
        memset(dximg, 0, image_size * sizeof(floating))
        for oh in range(Ho):
            for ow in range(Wo):
                iw0 = ow * stride_w - pad_left
                for r in range(kernel_h):
                    ih = oh * stride_h + r * dilation_h - pad_top
                    if ih < 0 or ih >= H:
                        continue
                    src = colbase + ((n * Ho + oh) * Wo + ow) * kernel_h * row_terms + r * row_terms
                    if dilation_w == 1:
                        # taps s_first <= s < s_end land inside the row
                        s_first = <int> max(0, -iw0)
                        s_end = <int> min(kernel_w, W - iw0)
                        if s_end <= s_first:
                            continue
                        _add_run(r32, r64, dximg + (ih * W + iw0 + s_first) * C, src + s_first * C,
                                 (s_end - s_first) * C)
                    else:
                        for s in range(kernel_w):
                            iw = iw0 + s * dilation_w
                            if 0 <= iw < W:
                                _add_run(r32, r64, dximg + (ih * W + iw) * C, src + s * C, C)


def conv2d_backward_data_rows(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, K)
    const floating[:, :, :, ::1] wpack,   # IN (parts, R, K, block)
    floating[:, :, :, ::1] dxp,           # OUT (N, Hp, Wp, C): dx with its padding
    int kernel_w, int stride_h, int stride_w, int dilation_h,
    int isa, int nv, int n_threads,
):
    """dxp = 0, then for every output pixel and kernel row r, dy[n, oh, ow] times the
    transpose of w[r] (its S*C terms: input pixels ow*stride_w + s, s < S, all channels,
    one contiguous run of the padded input row oh*stride_h + r*dilation_h) added in place.

    The data gradient of a convolution with few input channels and no horizontal dilation,
    without a columns array: ``wpack`` holds each kernel row's (s, c) terms in ``parts``
    blocks of ``block``, zero-padded. A tile is one output position in a group of images
    (their runs never overlap); each task owns a group and walks the positions in order,
    so the sums do not depend on the thread count. The caller crops the padding off.
    """
    cdef:
        Py_ssize_t n_images = dy.shape[0], Ho = dy.shape[1], Wo = dy.shape[2]
        int K = dy.shape[3]
        Py_ssize_t Hp = dxp.shape[1], Wp = dxp.shape[2], C = dxp.shape[3]
        int block = wpack.shape[3]
        Py_ssize_t row_terms = kernel_w * C
        Py_ssize_t parts = wpack.shape[0]
        Py_ssize_t kernel_h = wpack.shape[1]
        int tp_max = _tile_pixels(isa, nv)
        Py_ssize_t n_groups = (n_images + tp_max - 1) // tp_max
        Py_ssize_t group = (n_images + n_groups - 1) // n_groups if n_groups else 0
        Py_ssize_t g, n0, oh, ow, ih, r, part, i
        int tp
        const floating *dybase
        const floating *wbase
        floating *dxbase
        fc_taps taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        floating **outs
        const fc_conv_forward_table_f32 *k32 = NULL
        const fc_conv_forward_table_f64 *k64 = NULL

    if n_images == 0 or Hp * Wp * C == 0:
        return
    if floating is float:
        k32 = fc_conv_forward_table_f32_for(isa)
    else:
        k64 = fc_conv_forward_table_f64_for(isa)
    dxbase = &dxp[0, 0, 0, 0]
    if Ho * Wo * K == 0:
        memset(dxbase, 0, n_images * Hp * Wp * C * sizeof(floating))
        return
    dybase = &dy[0, 0, 0, 0]
    wbase = &wpack[0, 0, 0, 0]
    scratch.memory = NULL
    taps.off = NULL
    taps.row = NULL
    try:
        # one tap, the tile's own pixel: every pixel's position is (0, 0) of a 1x1 grid
        if (_scratch_init(&scratch, n_threads, tp_max)
                or _tap_table(&taps, 1, 1, 1)):
            raise MemoryError()
        taps.off[0] = 0
        taps.row[0] = 0
        taps.col[0] = 0
        taps.ids[0] = 0
        for g in prange(n_groups, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <floating **> _scratch_outs(&scratch, threadid())
            n0 = g * group
            tp = <int> min(group, n_images - n0)
            if tp <= 0:
                continue
            memset(dxbase + n0 * Hp * Wp * C, 0, tp * Hp * Wp * C * sizeof(floating))
            for oh in range(Ho):
                for ow in range(Wo):
                    for i in range(tp):
                        pix_off[i] = (((n0 + i) * Ho + oh) * Wo + ow) * K
                    for r in range(kernel_h):
                        ih = oh * stride_h + r * dilation_h
                        for part in range(parts):
                            for i in range(tp):
                                outs[i] = dxbase + ((((n0 + i) * Hp + ih) * Wp + ow * stride_w)
                                                    * C + part * block)
                            _forward_tile(k32, k64, nv, tp, dybase, pix_off, pix_pos, &taps, K,
                                          dybase, wbase + (part * kernel_h + r) * K * block,
                                          block, NULL, True, False, outs,
                                          min(block, row_terms - part * block))
    finally:
        free(scratch.memory)
        _free_tap_table(&taps)
