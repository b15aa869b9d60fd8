# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Direct 2-D convolution on NHWC arrays: forward, data gradient and weight gradient.

The arithmetic is done by the register-tiled micro-kernels of ``_conv_kernels.h``; this
module splits the work into independent tiles, describes each tile to the kernel (its
pixels' origins and a table of taps; the kernel reads zeros wherever a tap falls into
padding, so no padded copy of the input is made) and runs the tiles with ``prange``.
Every output element is computed by exactly one task in an order fixed by the data, so
results do not depend on the thread count.

The arrays arrive validated and packed by ``fastcnn.functional``; nothing here checks
shapes again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from ._dispatch cimport fc_cpu_isa
from ._openmp cimport per_thread

# The convolution's micro-kernel tables (_conv_kernels.h), one per (family, type,
# instruction set). Cython has no type that follows `floating`, so each table is declared
# for float and for double; the drivers fetch the one of their dtype once per call,
# outside their loops.
cdef extern from "_conv_kernels.h" nogil:
    int FC_TILE_PIXELS_MAX
    int FC_TILE_CHANNELS
    ctypedef struct fc_taps:
        int ntaps
        long *off
        int *row
        int *col
        int *ids
        int rows, cols

    ctypedef struct fc_conv_forward_table_f32:
        int lanes
        int tile_pixels[2]
        void (*tile)(int nv, int tp, const float *x, const long *pix_off, const int *pix_pos,
                     const fc_taps *taps, int cin, const float *zeros, const float *w,
                     long ldw, const float *bias, int accumulate, int relu,
                     float *const *out, int kcount) noexcept nogil
    ctypedef struct fc_conv_forward_table_f64:
        int lanes
        int tile_pixels[2]
        void (*tile)(int nv, int tp, const double *x, const long *pix_off, const int *pix_pos,
                     const fc_taps *taps, int cin, const double *zeros, const double *w,
                     long ldw, const double *bias, int accumulate, int relu,
                     double *const *out, int kcount) noexcept nogil

    ctypedef struct fc_conv_wgrad_table_f32:
        void (*tile)(int nv, int tc, const float *const *xrows, const float *const *dyrows,
                     const int *rowlen, int nrows, long xstride, long dystride, float *tile,
                     long ldt) noexcept nogil
    ctypedef struct fc_conv_wgrad_table_f64:
        void (*tile)(int nv, int tc, const double *const *xrows, const double *const *dyrows,
                     const int *rowlen, int nrows, long xstride, long dystride, double *tile,
                     long ldt) noexcept nogil

    ctypedef struct fc_conv_c1_table_f32:
        int rows
        int taps
        void (*forward)(int nr, const float *const *rows, int R, int S, long tap_step,
                        const float *wrows, long ldw, const float *bias, int relu, long L,
                        float *out, long ldo) noexcept nogil
        void (*weight_grad)(int nt, const float *const *xrows, const float *const *dyrows,
                            int nrows, long tap_step, long L, float *sums,
                            long lds) noexcept nogil
    ctypedef struct fc_conv_c1_table_f64:
        int rows
        int taps
        void (*forward)(int nr, const double *const *rows, int R, int S, long tap_step,
                        const double *wrows, long ldw, const double *bias, int relu, long L,
                        double *out, long ldo) noexcept nogil
        void (*weight_grad)(int nt, const double *const *xrows, const double *const *dyrows,
                            int nrows, long tap_step, long L, double *sums,
                            long lds) noexcept nogil

    ctypedef struct fc_conv_runs_table_f32:
        void (*add_run)(float *dst, const float *src, long n) noexcept nogil
        void (*masked_sum)(float *d, const float *y, double *acc, long n) noexcept nogil
        void (*expand_rows)(const float *src, long ld_src, long W, int K, float *dst,
                            long ld_dst, long n, long readable) noexcept nogil
    ctypedef struct fc_conv_runs_table_f64:
        void (*add_run)(double *dst, const double *src, long n) noexcept nogil
        void (*masked_sum)(double *d, const double *y, double *acc, long n) noexcept nogil
        void (*expand_rows)(const double *src, long ld_src, long W, int K, double *dst,
                            long ld_dst, long n, long readable) noexcept nogil

    const fc_conv_forward_table_f32 *fc_conv_forward_table_f32_for(int isa)
    const fc_conv_forward_table_f64 *fc_conv_forward_table_f64_for(int isa)
    const fc_conv_wgrad_table_f32 *fc_conv_wgrad_table_f32_for(int isa)
    const fc_conv_wgrad_table_f64 *fc_conv_wgrad_table_f64_for(int isa)
    const fc_conv_c1_table_f32 *fc_conv_c1_table_f32_for(int isa)
    const fc_conv_c1_table_f64 *fc_conv_c1_table_f64_for(int isa)
    const fc_conv_runs_table_f32 *fc_conv_runs_table_f32_for(int isa)
    const fc_conv_runs_table_f64 *fc_conv_runs_table_f64_for(int isa)

TILE_CHANNELS = FC_TILE_CHANNELS
ISA_NAMES = {0: "baseline (16-byte vectors)", 1: "AVX2+FMA", 2: "AVX-512"}


def cpu_isa():
    """The best SIMD level of this CPU: 0 baseline, 1 AVX2+FMA, 2 AVX-512."""
    return fc_cpu_isa()


def vector_length(int isa, int itemsize):
    """Elements per SIMD vector at ``isa`` for elements of ``itemsize`` bytes."""
    return fc_conv_forward_table_f32_for(isa).lanes * <int> sizeof(float) // itemsize


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
    cdef _Tile *tiles
    if inner > 0 and left + right > 0:
        n_inner = _row_strips(inner, tp_max)
        n_down = _row_strips(height, tp_max)
    if n_inner and n_down:
        n = height * n_inner + (left + right) * n_down
    else:
        n_strips = _row_strips(width, tp_max)
        n = height * n_strips if n_strips else (pixels + tp_max - 1) // tp_max
    n_tiles[0] = n
    tiles = <_Tile *> malloc(max(n, 1) * sizeof(_Tile))
    if tiles == NULL:
        return NULL
    i = 0
    if n_inner and n_down:
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
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2]
        int C = x.shape[3]
        # x's strides in elements: image, row, pixel
        Py_ssize_t xs0 = x.strides[0] // sizeof(floating)
        Py_ssize_t xs1 = x.strides[1] // sizeof(floating)
        Py_ssize_t xs2 = x.strides[2] // sizeof(floating)
        Py_ssize_t Ho = out.shape[1], Wo = out.shape[2], K = out.shape[3]
        Py_ssize_t n_pixels = Ho * Wo
        int tp_max = _tile_pixels(isa, nv)
        int tp
        bint packed = wpack.shape[3] == block
        Py_ssize_t n_kblocks = wpack.shape[0] if packed else wpack.shape[3] // block
        int ntaps = kernel_h * kernel_w
        int patch_len = ntaps * C
        # a weight row's stride, and the distance from one block to the next
        long ldw = block if packed else wpack.shape[3]
        long block_stride = patch_len * block if packed else block
        Py_ssize_t n_ptiles, n_tasks
        Py_ssize_t task, n, ptile, kblock, kblock_first, kblock_end
        Py_ssize_t k0, oh, ow
        _Tile *tiles = NULL
        _Tile tile
        int i, r, s, row0, col0
        bint inside
        const floating *xbase = &x[0, 0, 0, 0]
        const floating *wbase = &wpack[0, 0, 0, 0]
        const floating *bbase = &bias[0]
        floating *obase = &out[0, 0, 0, 0]
        floating *zeros
        fc_taps all_taps, row_taps
        const fc_taps *taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        floating **outs
        long *pix_dest
        # the first and last output columns whose whole kernel row is inside the image
        Py_ssize_t ow_lo = (pad_left + stride_w - 1) // stride_w
        Py_ssize_t ow_hi = (W - 1 - (kernel_w - 1) * dilation_w + pad_left) // stride_w
        const fc_conv_forward_table_f32 *k32 = NULL
        const fc_conv_forward_table_f64 *k64 = NULL

    if n_images * n_pixels * n_kblocks == 0:
        return
    if floating is float:
        k32 = fc_conv_forward_table_f32_for(isa)
    else:
        k64 = fc_conv_forward_table_f64_for(isa)
    if x.strides[3] != sizeof(floating):
        raise ValueError("conv2d_forward needs x's channels contiguous")
    if W - 1 - (kernel_w - 1) * dilation_w + pad_left < 0:
        ow_hi = -1
    ow_lo = min(ow_lo, Wo)
    ow_hi = max(ow_hi, ow_lo - 1)
    zeros = <floating *> calloc(kernel_w * C, sizeof(floating))
    scratch.memory = NULL
    all_taps.off = row_taps.off = NULL
    all_taps.row = row_taps.row = NULL
    try:
        # columns ow < ow_lo and ow > ow_hi have kernel rows reaching off the image
        tiles = _tile_table(Ho, Wo, ow_lo, Wo - 1 - ow_hi, tp_max, &n_ptiles)
        if (zeros == NULL or _scratch_init(&scratch, n_threads, tp_max)
                or tiles == NULL
                or _tap_table(&all_taps, ntaps, H, W) or _tap_table(&row_taps, kernel_h, H, W)):
            raise MemoryError()
        n_tasks = n_images * n_ptiles * (n_kblocks if weights_outer else 1)
        for r in range(kernel_h):
            for s in range(kernel_w):
                i = r * kernel_w + s
                all_taps.off[i] = r * dilation_h * xs1 + s * dilation_w * xs2
                all_taps.row[i] = r * dilation_h
                all_taps.col[i] = s * dilation_w
                all_taps.ids[i] = i
            # a kernel row of S*C contiguous values (whole-row tiles only)
            row_taps.off[r] = r * dilation_h * xs1
            row_taps.row[r] = r * dilation_h
            row_taps.col[r] = 0
            row_taps.ids[r] = r
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
            px.row = tile.start // Wo
            px.col = tile.start % Wo
            inside = dilation_w == 1 and xs2 == C
            for i in range(tp):
                row0 = px.row * stride_h - pad_top
                col0 = px.col * stride_w - pad_left
                pix_pos[i] = row0
                pix_pos[tp + i] = col0
                pix_off[i] = n * xs0 + row0 * xs1 + col0 * xs2
                # pixels a shifted tile recomputes from the one before are not stored
                pix_dest[i] = ((n * n_pixels + px.row * Wo + px.col) * K if i >= tile.skip
                               else -1)
                if px.col < ow_lo or px.col > ow_hi:
                    inside = False
                px = _next_pixel(px, tile.step, Wo)
            taps = &row_taps if inside else &all_taps
            for kblock in range(kblock_first, kblock_end):
                k0 = kblock * block
                for i in range(tp):
                    outs[i] = obase + pix_dest[i] + k0 if pix_dest[i] >= 0 else NULL
                _forward_tile(k32, k64, nv, tp, xbase, pix_off, pix_pos, taps,
                              kernel_w * C if inside else C, zeros,
                              wbase + kblock * block_stride, ldw, bbase + k0, accumulate,
                              relu, outs, min(block, K - k0))
    finally:
        free(zeros)
        free(scratch.memory)
        free(tiles)
        _free_tap_table(&all_taps)
        _free_tap_table(&row_taps)


cdef inline void _add_run(const fc_conv_runs_table_f32 *r32, const fc_conv_runs_table_f64 *r64,
                          floating *dst, const floating *src, long n) noexcept nogil:
    if floating is float:
        r32.add_run(dst, src, n)
    else:
        r64.add_run(dst, src, n)


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
        int min_col = 0, max_col = 0
        _Tile *tiles = NULL
        _Tile tile
        _Pixel px
        int i, t
        const floating *dybase = &dy[0, 0, 0, 0]
        const floating *wbase = &wpack[0, 0, 0, 0]
        floating *dxbase = &dx[0, 0, 0, 0]
        floating *zeros
        fc_taps taps
        _TileScratch scratch
        long *pix_off
        int *pix_pos
        floating **outs
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
    taps.off = NULL
    taps.row = NULL
    try:
        if (zeros == NULL or _scratch_init(&scratch, n_threads, tp_max)
                or _tap_table(&taps, ntaps, Ho, Wo)):
            raise MemoryError()
        for t in range(ntaps):
            taps.off[t] = (tap_row[t] * Wo + tap_col[t]) * K
            taps.row[t] = tap_row[t]
            taps.col[t] = tap_col[t]
            taps.ids[t] = t
            min_col = min(min_col, tap_col[t]) if t else tap_col[t]
            max_col = max(max_col, tap_col[t]) if t else tap_col[t]
        # columns jw whose taps reach off dy: jw + min_col < 0 or jw + max_col >= Wo
        left = min(max(-min_col, 0), Wj)
        right = min(max(Wj - (Wo - max_col), 0), Wj - left)
        tiles = _tile_table(Hj, Wj, left, right, tp_max, &n_ptiles)
        if tiles == NULL:
            raise MemoryError()
        n_tasks = n_images * n_ptiles * n_cblocks
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            pix_off = _scratch_offs(&scratch, threadid())
            pix_pos = _scratch_pos(&scratch, threadid())
            outs = <floating **> _scratch_outs(&scratch, threadid())
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
            px.row = tile.start // Wj
            px.col = tile.start % Wj
            for i in range(tp):
                pix_pos[i] = px.row
                pix_pos[tp + i] = px.col
                pix_off[i] = ((n * Ho + px.row) * Wo + px.col) * K
                # pixels a shifted tile recomputes from the one before are not stored
                if i >= tile.skip:
                    outs[i] = dxbase + (((n * H + row0 + px.row * stride_h) * W + col0
                                         + px.col * stride_w) * C + c0)
                else:
                    outs[i] = NULL
                px = _next_pixel(px, tile.step, Wj)
            _forward_tile(k32, k64, nv, tp, dybase, pix_off, pix_pos, &taps, K, zeros,
                          wbase + cblock * ntaps * K * block, block, NULL, False, False, outs,
                          min(block, C - c0))
    finally:
        free(zeros)
        free(scratch.memory)
        free(tiles)
        _free_tap_table(&taps)


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
        Py_ssize_t n_ctiles = (C + FC_TILE_CHANNELS - 1) // FC_TILE_CHANNELS
        Py_ssize_t n_kblocks = Kp // block
        Py_ssize_t chunk_len = (n_images + n_chunks - 1) // n_chunks
        Py_ssize_t tiles_per_chunk = kernel_h * kernel_w * n_ctiles * n_kblocks
        Py_ssize_t n_tasks = n_chunks * tiles_per_chunk
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

    if n_tasks == 0:
        return
    if floating is float:
        w32 = fc_conv_wgrad_table_f32_for(isa)
    else:
        w64 = fc_conv_wgrad_table_f64_for(isa)
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
                c0 = ctile * FC_TILE_CHANNELS
                tc = <int> min(FC_TILE_CHANNELS, C - c0)
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


def expand_channels(
    const floating[:, :, ::1] x,          # IN (N, H, W) single-channel images
    floating[:, :, ::1] xe,               # OUT (N, H + pad_top + pad_bottom, row length)
    int pad_top, int pad_left, int K, int isa, int n_threads,
):
    """Zero-padded, channel-expanded rows: xe[n, pad_top + i, (pad_left + j) * K + k] =
    x[n, i, j] for every k < K, zero everywhere else (padding and the row's tail)."""
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2]
        Py_ssize_t Hp = xe.shape[1], row_len = xe.shape[2]
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
        ximg = &xe[0, 0, 0] + n * Hp * row_len
        # padding rows, then each image row's left padding and tail
        memset(ximg, 0, pad_top * row_len * sizeof(floating))
        memset(ximg + (pad_top + H) * row_len, 0, (Hp - pad_top - H) * row_len * sizeof(floating))
        for i in range(H):
            xrow = ximg + (pad_top + i) * row_len
            memset(xrow, 0, first * sizeof(floating))
            memset(xrow + end, 0, (row_len - end) * sizeof(floating))
        if H == 0 or W == 0:
            continue
        src = &x[n, 0, 0]
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
    cdef:
        Py_ssize_t Hp = xe.shape[1], row_len = xe.shape[2]
        Py_ssize_t Ho = out.shape[1], K = out.shape[3]
        Py_ssize_t L = out.shape[2] * K, ldw = wrows.shape[1]
        # the same for both types (a register budget)
        int rows_per_task = fc_conv_c1_table_f32_for(isa).rows
        Py_ssize_t blocks = (Ho + rows_per_task - 1) // rows_per_task
        Py_ssize_t n_tasks = out.shape[0] * blocks
        Py_ssize_t task, n, oh, oh0
        int r, j, nr
        const floating *xbase = &xe[0, 0, 0]
        floating *orow
        const floating **rows
        const floating **all_rows
        const fc_conv_c1_table_f32 *c32 = NULL
        const fc_conv_c1_table_f64 *c64 = NULL

    if n_tasks == 0 or L == 0:
        return
    if floating is float:
        c32 = fc_conv_c1_table_f32_for(isa)
    else:
        c64 = fc_conv_c1_table_f64_for(isa)
    all_rows = <const floating **> malloc(
        n_threads * per_thread(rows_per_task * kernel_h, sizeof(floating *)) * sizeof(floating *))
    try:
        if all_rows == NULL:
            raise MemoryError()
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
                        rows[j * kernel_h + r] = xbase + (n * Hp + (oh + j) * stride_h
                                                          + r * dilation_h) * row_len
                orow = &out[0, 0, 0, 0] + (n * Ho + oh) * L
                if floating is float:
                    c32.forward(nr, rows, kernel_h, kernel_w, dilation_w * K, &wrows[0, 0], ldw,
                                &bias_row[0], relu, L, orow, L)
                else:
                    c64.forward(nr, rows, kernel_h, kernel_w, dilation_w * K, &wrows[0, 0], ldw,
                                &bias_row[0], relu, L, orow, L)
                oh = oh + nr
    finally:
        free(all_rows)


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
