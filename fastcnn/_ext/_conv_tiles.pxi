# Included by _conv.pyx: what the forward pass and the data gradient share to describe
# work to the forward tile kernel (tap tables, per-thread pixel scratch, the tiling of an
# output grid), and the packing of weights into output-channel blocks; and what the two
# pooled forward drivers (direct and Winograd) share to pool their scratch.


cdef inline int _tile_pixels(int isa, int nv) noexcept nogil:
    """Pixels per forward tile at ``isa`` with nv vectors of channels: the same for both
    types, since the register budget counts vector registers only."""
    return fc_conv_forward_table_f32_for(isa).tile_pixels[0 if nv == 1 else 1]


cdef inline void _forward_tile(const fc_conv_forward_table_f32 *k32,
                               const fc_conv_forward_table_f64 *k64, int nv, int tp,
                               const floating *x, const long *pix_off,
                               const int *pix_pos, const fc_taps *taps, int cin,
                               const floating *zeros, const floating *w, long ldw,
                               const floating *bias, bint accumulate, bint relu,
                               floating *const *out, int kcount) noexcept nogil:
    # one call site per driver for both types: the table of the other type is NULL
    if floating is float:
        k32.tile(nv, tp, x, pix_off, pix_pos, taps, cin, zeros, w, ldw, bias, accumulate,
                 relu, out, kcount)
    else:
        k64.tile(nv, tp, x, pix_off, pix_pos, taps, cin, zeros, w, ldw, bias, accumulate,
                 relu, out, kcount)


cdef inline bint _slide_tile(const fc_conv_forward_table_f32 *k32,
                             const fc_conv_forward_table_f64 *k64, int kernel_w, int tp,
                             const floating *x, const long *pix_off, const int *pix_pos,
                             const fc_taps *row_taps, int cin, const floating *w, long ldw,
                             const floating *bias, bint accumulate, bint relu,
                             floating *const *out, int kcount) noexcept nogil:
    """The sliding tile where the instruction set has one for (kernel_w, tp), the tile's
    pixels are one contiguous run of a row (cin values apart) and every tap lies inside
    the grid horizontally; False (nothing done) otherwise. ``row_taps`` has one tap per
    kernel row, reading kernel_w pixels from its column on (no dilation), with that row's
    kernel_w taps of weights one after another (see slide_tile_impl)."""
    if (pix_pos[0] != pix_pos[tp - 1]
            or pix_off[tp - 1] - pix_off[0] != <long> (tp - 1) * cin
            or pix_pos[tp] + row_taps.col[0] < 0
            or pix_pos[2 * tp - 1] + row_taps.col[0] + kernel_w > row_taps.cols):
        return False
    if floating is float:
        return k32.slide != NULL and k32.slide(kernel_w, tp, x, pix_off, pix_pos, row_taps,
                                               cin, NULL, w, ldw, bias, accumulate, relu,
                                               out, kcount)
    else:
        return k64.slide != NULL and k64.slide(kernel_w, tp, x, pix_off, pix_pos, row_taps,
                                               cin, NULL, w, ldw, bias, accumulate, relu,
                                               out, kcount)


cdef int _tap_table(fc_taps *taps, int ntaps, int rows, int cols) noexcept nogil:
    """Allocate ``taps``' arrays for ntaps taps on a rows x cols grid; -1 if out of memory."""
    taps.ntaps = ntaps
    taps.rows = rows
    taps.cols = cols
    taps.off = <long *> malloc(max(ntaps, 1) * sizeof(long))
    taps.row = <int *> malloc(max(ntaps, 1) * 3 * sizeof(int))
    taps.col = taps.row + ntaps if taps.row != NULL else NULL
    taps.ids = taps.row + 2 * ntaps if taps.row != NULL else NULL
    return -1 if taps.off == NULL or taps.row == NULL else 0


cdef void _free_tap_table(fc_taps *taps) noexcept nogil:
    free(<void *> taps.off)
    free(<void *> taps.row)


cdef struct _TileScratch:
    # each thread's tile description: pixel origins (tp_max longs), positions (2 * tp_max
    # ints), output pointers (tp_max) and output offsets (tp_max longs), one block of
    # whole cache lines per thread
    char *memory
    Py_ssize_t block
    int tp_max


cdef int _scratch_init(_TileScratch *s, int n_threads, int tp_max) noexcept nogil:
    """Allocate ``s`` for n_threads threads; -1 if out of memory."""
    s.tp_max = tp_max
    s.block = per_thread(tp_max * (2 * sizeof(long) + 2 * sizeof(int) + sizeof(void *)), 1)
    s.memory = <char *> calloc(n_threads, s.block)
    return -1 if s.memory == NULL else 0


cdef inline long *_scratch_offs(_TileScratch *s, int thread) noexcept nogil:
    return <long *> (s.memory + thread * s.block)


cdef inline int *_scratch_pos(_TileScratch *s, int thread) noexcept nogil:
    return <int *> (s.memory + thread * s.block + s.tp_max * sizeof(long))


cdef inline void **_scratch_outs(_TileScratch *s, int thread) noexcept nogil:
    return <void **> (s.memory + thread * s.block
                      + s.tp_max * (sizeof(long) + 2 * sizeof(int)))


cdef inline long *_scratch_dest(_TileScratch *s, int thread) noexcept nogil:
    return <long *> (s.memory + thread * s.block
                     + s.tp_max * (sizeof(long) + 2 * sizeof(int) + sizeof(void *)))


cdef inline Py_ssize_t _row_strips(Py_ssize_t width, int tp_max) noexcept nogil:
    """Tiles per output row: the fewest strips of at most tp_max pixels, or 0 where they
    would be narrower than half a tile (then tiles run over the flattened image)."""
    cdef Py_ssize_t n
    if width == 0:
        return 0
    n = (width + tp_max - 1) // tp_max
    return n if width // n * 2 >= tp_max else 0


cdef inline void _row_columns(Py_ssize_t W, Py_ssize_t Wo, int kernel_w, int stride_w,
                              int pad_left, int dilation_w, Py_ssize_t *ow_lo,
                              Py_ssize_t *ow_hi) noexcept nogil:
    """The first and last output columns whose whole kernel row is inside the image."""
    ow_lo[0] = min((pad_left + stride_w - 1) // stride_w, Wo)
    if W - 1 - (kernel_w - 1) * dilation_w + pad_left < 0:
        ow_hi[0] = -1
    else:
        ow_hi[0] = (W - 1 - (kernel_w - 1) * dilation_w + pad_left) // stride_w
    ow_hi[0] = max(ow_hi[0], ow_lo[0] - 1)


cdef inline Py_ssize_t _row_layout(Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t left,
                                   Py_ssize_t right, int tp_max,
                                   bint *borders) noexcept nogil:
    """How _tile_table (and conv2d_forward_pooled) split each output row of an Ho x Wo
    grid: the number of strips between ``left`` and ``right`` border columns (then
    ``borders``: those columns are tiles of their own, down the columns), or across the
    whole row; 0 where tiles run over the flattened grid."""
    cdef Py_ssize_t inner = Wo - left - right, n_inner = 0
    if inner > 0 and left + right > 0:
        n_inner = _row_strips(inner, tp_max)
        if n_inner and _row_strips(Ho, tp_max):
            borders[0] = True
            return n_inner
    borders[0] = False
    return _row_strips(Wo, tp_max)


cdef struct _Tile:
    Py_ssize_t start   # the first pixel the tile computes
    Py_ssize_t step    # from one of its pixels to the next: 1, or a row (a column tile)
    Py_ssize_t count   # its pixels
    Py_ssize_t skip    # its first pixels recomputed from the tile before, not stored


cdef struct _Pixel:
    Py_ssize_t row
    Py_ssize_t col


cdef inline _Pixel _next_pixel(_Pixel px, Py_ssize_t step, Py_ssize_t width) noexcept nogil:
    """The tile's pixel after ``px``: along the row (on into the next one), or, for a
    column tile (``step`` a whole row), down the column."""
    if step == 1:
        px.col += 1
        if px.col == width:
            px.col = 0
            px.row += 1
    else:
        px.row += 1
    return px


cdef _Tile *_tile_table(Py_ssize_t height, Py_ssize_t width, Py_ssize_t left,
                        Py_ssize_t right, int tp_max, Py_ssize_t *n_tiles) noexcept nogil:
    """The tiles of a height x width grid of pixels (malloc'd; NULL if out of memory).

    Where ``left`` and ``right`` columns have taps falling off the image, those columns
    go into tiles of their own, down the column, so that every tap that falls off does
    so for a whole tile and is skipped, and the columns between split into row strips
    whose kernel rows lie inside the image. Otherwise rows split into nearly equal strips
    of at most tp_max pixels, or, for rows narrower than half a tile, tiles run over the
    flattened grid (the last one shifted back to stay full).
    """
    cdef Py_ssize_t inner = width - left - right, n_inner = 0, n_down = 0, n_strips, n
    cdef Py_ssize_t i, j, row, col, pixels = height * width
    cdef bint borders
    cdef _Tile *tiles
    n_strips = _row_layout(height, width, left, right, tp_max, &borders)
    if borders:
        n_inner = n_strips
        n_down = _row_strips(height, tp_max)
        n = height * n_inner + (left + right) * n_down
    else:
        n = height * n_strips if n_strips else (pixels + tp_max - 1) // tp_max
    n_tiles[0] = n
    tiles = <_Tile *> malloc(max(n, 1) * sizeof(_Tile))
    if tiles == NULL:
        return NULL
    i = 0
    if borders:
        for row in range(height):
            for j in range(n_inner):
                tiles[i].start = row * width + left + j * inner // n_inner
                tiles[i].count = (j + 1) * inner // n_inner - j * inner // n_inner
                tiles[i].step = 1
                tiles[i].skip = 0
                i = i + 1
        for col in range(width):
            if left <= col < width - right:
                continue
            for j in range(n_down):
                tiles[i].start = j * height // n_down * width + col
                tiles[i].count = (j + 1) * height // n_down - j * height // n_down
                tiles[i].step = width
                tiles[i].skip = 0
                i = i + 1
    elif n_strips:
        for row in range(height):
            for j in range(n_strips):
                tiles[i].start = row * width + j * width // n_strips
                tiles[i].count = (j + 1) * width // n_strips - j * width // n_strips
                tiles[i].step = 1
                tiles[i].skip = 0
                i = i + 1
    else:
        for i in range(n):
            tiles[i].start = max(0, min(i * tp_max, pixels - tp_max))
            tiles[i].count = min(tp_max, pixels)
            tiles[i].step = 1
            tiles[i].skip = i * tp_max - tiles[i].start
    return tiles


def pack_weights(
    const floating[:, :, ::1] w,          # IN (T, A, B)
    const int[::1] taps,                  # IN which of the T taps to pack, in order
    floating[:, :, :, ::1] packed,        # OUT (blocks, len(taps), rows, block)
    bint transpose, int n_threads,
):
    """Weights in output-channel blocks, zero-padded past the last channel.

    transpose=False: packed[b, i, a, j] = w[taps[i], a, b * block + j] (forward: A
    inputs, B outputs); transpose=True: packed[b, i, a2, j] = w[taps[i], b * block + j, a2]
    (data gradient: A are the outputs, B the inputs).
    """
    cdef:
        Py_ssize_t n_taps = taps.shape[0], A = w.shape[1], B = w.shape[2]
        Py_ssize_t n_blocks = packed.shape[0], rows = packed.shape[2], block = packed.shape[3]
        Py_ssize_t outputs = A if transpose else B
        Py_ssize_t task, b, t, a, j, first, width
        const floating *src
        floating *dst

    for task in prange(n_blocks * n_taps, schedule="static", nogil=True, num_threads=n_threads):
        b = task // n_taps
        t = task % n_taps
        first = b * block
        width = min(block, outputs - first)
        dst = &packed[b, t, 0, 0]
        if width < block:
            memset(dst, 0, rows * block * sizeof(floating))
        if transpose:
            # output channel first + j is input row first + j of w: read rows, write columns
            for j in range(width):
                src = &w[taps[t], first + j, 0]
                for a in range(B):
                    dst[a * block + j] = src[a]
        else:
            for a in range(A):
                src = &w[taps[t], a, first]
                for j in range(width):
                    dst[a * block + j] = src[j]


cdef struct _Window2x2:
    # a 2x2 pooling window over a scratch, its arrays with it
    fc_pool_window window
    Py_ssize_t offsets[4]
    int64_t rel[4]
    int32_t rel32[4]


cdef void _window_2x2(_Window2x2 *w, Py_ssize_t width, Py_ssize_t C) noexcept nogil:
    """The 2x2 window in rows of ``width`` pixels of C values each (a thread's scratch)."""
    cdef int i, j
    for i in range(2):
        for j in range(2):
            w.rel[2 * i + j] = i * width + j
            w.rel32[2 * i + j] = <int32_t> w.rel[2 * i + j]
            w.offsets[2 * i + j] = w.rel[2 * i + j] * C
    w.window.n = 4
    w.window.offset = w.offsets
    w.window.rel = w.rel
    w.window.rel32 = w.rel32
    w.window.rel32_fits = w.rel[3] <= INT32_MAX


cdef inline void _pool_2x2_row(const fc_pool_table_f32 *p32, const fc_pool_table_f64 *p64,
                               bint average, const floating *x, Py_ssize_t C, Py_ssize_t Wp,
                               const fc_pool_window *window, floating *scratch,
                               floating *y) noexcept nogil:
    """y (Wp pixels of C values) = the 2x2, stride-2 max or mean of the two rows under it
    at x, by the pooling layer's own kernels (``scratch``: the max pool's, a row of x)."""
    if floating is float:
        if average:
            p32.avg_row(x, C, Wp, 2, window, 4, y)
        else:
            p32.max_values_row(x, C, Wp, 2, window, scratch, y)
    else:
        if average:
            p64.avg_row(x, C, Wp, 2, window, 4, y)
        else:
            p64.max_values_row(x, C, Wp, 2, window, scratch, y)


cdef struct _ConvArgs:
    # A forward convolution kernel's arguments but its arrays (the def wrappers fill it
    # from theirs; the compiled inference program, _conv_program.pxi, keeps one per step).
    # The input, (n_images, H, W, C) at element strides xs0 (image), xs1 (row), xs2 (pixel)
    Py_ssize_t n_images, H, W, C, xs0, xs1, xs2
    # the convolution's output (Ho, Wo, K) per image, and the pooled one's (Hp, Wp)
    Py_ssize_t Ho, Wo, K, Hp, Wp
    # the weights' blocks of output channels, and the length of their last axis
    Py_ssize_t n_kblocks, w_last
    int kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right
    int dilation_h, dilation_w
    bint relu, average, weights_outer, accumulate
    int isa, nv, block
    # Winograd: tiles per task, output tile, patch size, pooling (0 none, 1 max, 2 mean)
    int group, tile, alpha, pool


cdef inline void _input_args(_ConvArgs *a, Py_ssize_t n_images, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t C) noexcept nogil:
    """The input's shape in ``a``, C-contiguous."""
    a.n_images, a.H, a.W, a.C = n_images, H, W, C
    a.xs2 = C
    a.xs1 = W * C
    a.xs0 = H * W * C
