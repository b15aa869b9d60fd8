# Included by _conv.pyx: Winograd forward convolution (prediction, and mixed-precision
# training's forward pass and data gradient): F(4x4, 3x3), F(2x2, 5x5) and F(4x4, 5x5).

cdef extern from "_wino_kernels.h" nogil:
    ctypedef struct fc_wino_table_f32:
        int lanes
        int rows[2]
        void (*input)(const float **rows, int q0, int q1, const float *zeros, long C,
                      int alpha, float *tmp, float *v, long ldv) noexcept nogil
        void (*output)(const float *m, long ldm, long K, const float *bias, int relu,
                       int tile, int alpha, float *tmp, float *out, long ld_row, int rows,
                       int cols) noexcept nogil
        void (*gemm)(int nv, int tp, const float *v, long C, const float *u, long ldu,
                     float *m, long ldm) noexcept nogil
        void (*grad_output)(const float *g, long ld_row, long K, float *tmp, float *v,
                            long ldv) noexcept nogil
        void (*outer)(int nv, int tp, const float *v, long ldv, const float *u, long ldu, long n,
                      int acc, float *m, long ldm) noexcept nogil
        void (*filter)(const float *w, long CK, long K, int r, int alpha, const double *g,
                       long c, long k0, int width, int block, float *out,
                       long ld_pos) noexcept nogil
    ctypedef struct fc_wino_table_f64:
        int lanes
        int rows[2]
        void (*input)(const double **rows, int q0, int q1, const double *zeros, long C,
                      int alpha, double *tmp, double *v, long ldv) noexcept nogil
        void (*output)(const double *m, long ldm, long K, const double *bias, int relu,
                       int tile, int alpha, double *tmp, double *out, long ld_row, int rows,
                       int cols) noexcept nogil
        void (*gemm)(int nv, int tp, const double *v, long C, const double *u, long ldu,
                     double *m, long ldm) noexcept nogil
        void (*grad_output)(const double *g, long ld_row, long K, double *tmp, double *v,
                            long ldv) noexcept nogil
        void (*outer)(int nv, int tp, const double *v, long ldv, const double *u, long ldu, long n,
                      int acc, double *m, long ldm) noexcept nogil
        void (*filter)(const double *w, long CK, long K, int r, int alpha, const double *g,
                       long c, long k0, int width, int block, double *out,
                       long ld_pos) noexcept nogil
    const fc_wino_table_f32 *fc_wino_table_f32_for(int isa)
    const fc_wino_table_f64 *fc_wino_table_f64_for(int isa)


def winograd_rows(int isa, int nv):
    """Rows of the Winograd products per micro-kernel call at ``isa`` with ``nv``
    vectors of output channels (a task's tiles are best a multiple of it)."""
    return fc_wino_table_f32_for(isa).rows[0 if nv == 1 else 1]


def winograd_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    const floating[:, :, :, ::1] upack,   # IN (alpha^2, K blocks, C, block): G g G^T
    const floating[::1] bias,             # IN (K,)
    floating[:, :, :, ::1] out,           # OUT (N, Ho, Wo, K)
    int pad_top, int pad_left, bint relu, int isa, int nv, int block, int group,
    int n_threads, int tile=4, int alpha=6, int pool=0,
):
    """out = conv(x, w) + bias (then relu), stride 1, by Winograd: F(4x4, 3x3) (``tile``
    4, ``alpha`` 6, w 3x3), F(2x2, 5x5) (``tile`` 2, ``alpha`` 6, w 5x5) or F(4x4, 5x5)
    (``tile`` 4, ``alpha`` 8, w 5x5).

    With ``pool`` 1 (max) or 2 (mean), a 2x2 pooling with stride 2 follows, and ``out``
    is the pooled (N, Ho // 2, Wo // 2, K): each tile's pixels go to the thread's scratch
    and the pooling kernels (``_pool_kernels.h``) write its pooled ones, bit for bit the
    two steps' values (a 4x4 or 2x2 tile holds whole 2x2 windows).

    The output splits into tile x tile blocks of pixels ("tiles", the last ones in a row
    or column cut short); a task takes ``group`` consecutive tiles and, in its thread's own
    buffers, transforms their alpha x alpha input patches (zeros off the image), multiplies
    each of the alpha^2 transformed positions by its (C, K) transformed filter (a register-tiled
    matrix product, ``block`` output channels at a time), and transforms the products
    back into its output pixels. Each output pixel is computed by one task, in an order fixed
    by the data: the result does not depend on the thread count, nor on the batch.
    """
    cdef _ConvArgs a
    if (tile, alpha) not in ((4, 6), (2, 6), (4, 8)):
        raise ValueError(f"no Winograd form with {tile}x{tile} tiles of {alpha}x{alpha} patches")
    if upack.shape[0] != alpha * alpha:
        raise ValueError(f"the transformed filter has {upack.shape[0]} positions, not "
                         f"{alpha * alpha}: it was made for another Winograd form")
    if pool not in (0, 1, 2):
        raise ValueError(f"pool is 0 (none), 1 (max) or 2 (mean), not {pool}")
    _input_args(&a, x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    a.Hp, a.Wp, a.K, a.n_kblocks = out.shape[1], out.shape[2], out.shape[3], upack.shape[1]
    a.Ho = a.Hp * (2 if pool else 1)
    a.Wo = a.Wp * (2 if pool else 1)
    a.pad_top, a.pad_left, a.relu, a.isa, a.nv, a.block = pad_top, pad_left, relu, isa, nv, block
    a.group, a.tile, a.alpha, a.pool = group, tile, alpha, pool
    if a.n_images * a.Ho * a.Wo * a.K == 0:
        return
    if _winograd_run(&a, &x[0, 0, 0, 0], &upack[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                     n_threads):
        raise MemoryError()


cdef inline void _input_tile(const fc_wino_table_f32 *w32, const fc_wino_table_f64 *w64,
                             const floating *image, Py_ssize_t H, Py_ssize_t W, long C,
                             int row, int col, int alpha, const floating *zeros,
                             floating *tmp, floating *v, long ldv) noexcept nogil:
    """v = the input transform of the alpha x alpha patch of image (H, W, C) from (row,
    col) on, zeros off the image, read in place (the table's input reads the zeros from
    ``zeros``, C of them): the same bits as from a copy of the patch."""
    cdef const floating *rows[8]
    cdef int r, q0 = max(0, -col), q1 = <int> max(q0, min(alpha, W - col))
    for r in range(alpha):
        if 0 <= row + r < H and q1 > q0:
            rows[r] = image + ((row + r) * W + col + q0) * C
        else:
            rows[r] = NULL
    if floating is float:
        w32.input(rows, q0, q1, zeros, C, alpha, tmp, v, ldv)
    else:
        w64.input(rows, q0, q1, zeros, C, alpha, tmp, v, ldv)


cdef inline void _patch_copy(floating *patch, const floating *image, Py_ssize_t H,
                             Py_ssize_t W, long C, int row, int col, int rows,
                             int cols) noexcept nogil:
    """patch (rows, cols, C) = the pixels of image (H, W, C) from (row, col) on, zeros off
    the image: one copy per row's run of pixels inside it."""
    cdef int r, q0 = max(0, -col), q1 = <int> max(q0, min(cols, W - col))
    cdef floating *dst
    for r in range(rows):
        dst = patch + r * cols * C
        if not 0 <= row + r < H or q1 == q0:
            memset(dst, 0, cols * C * sizeof(floating))
            continue
        memset(dst, 0, q0 * C * sizeof(floating))
        memcpy(dst + q0 * C, image + ((row + r) * W + col + q0) * C,
               (q1 - q0) * C * sizeof(floating))
        memset(dst + q1 * C, 0, (cols - q1) * C * sizeof(floating))


cdef int _winograd_run(const _ConvArgs *a, const floating *xbase, const floating *ubase,
                       const floating *bias, floating *obase, int n_threads) noexcept nogil:
    """winograd_forward on the arrays at these addresses, as ``a`` describes them (a valid
    form, a non-empty output): 0, or -1 where memory ran out."""
    cdef:
        Py_ssize_t N = a.n_images, H = a.H, W = a.W
        long C = a.C
        Py_ssize_t Ho = a.Ho, Wo = a.Wo
        int tile = a.tile, alpha = a.alpha, pool = a.pool, group = a.group
        int pad_top = a.pad_top, pad_left = a.pad_left
        bint relu = a.relu
        int isa = a.isa, nv = a.nv, block = a.block
        Py_ssize_t Hp = a.Hp, Wp = a.Wp, half = tile // 2
        long K = a.K
        Py_ssize_t n_kblocks = a.n_kblocks
        long Kp = n_kblocks * block
        Py_ssize_t tiles_h = (Ho + tile - 1) // tile, tiles_w = (Wo + tile - 1) // tile
        Py_ssize_t per_image = tiles_h * tiles_w
        Py_ssize_t n_tiles = N * per_image
        Py_ssize_t n_groups = (n_tiles + group - 1) // group
        int rows_max = fc_wino_table_f32_for(isa).rows[0 if nv == 1 else 1]
        Py_ssize_t g, t, t0, count, i, n, ti, tj, kb, p0
        int p, r, q, tp, row, col, rows, cols
        int positions = alpha * alpha
        long tmp_len = positions * max(C, K)
        Py_ssize_t thread_len, zeros_len = per_thread(C, sizeof(floating))
        floating *memory = NULL
        floating *mine
        const floating *zeros
        floating *tmp
        floating *v
        floating *m
        floating *pconv
        _Window2x2 window
        const fc_pool_table_f32 *p32 = NULL
        const fc_pool_table_f64 *p64 = NULL
        long tile_len = tile * tile * K
        const fc_wino_table_f32 *w32 = NULL
        const fc_wino_table_f64 *w64 = NULL

    if floating is float:
        w32 = fc_wino_table_f32_for(isa)
        p32 = fc_pool_table_f32_for(isa)
    else:
        w64 = fc_wino_table_f64_for(isa)
        p64 = fc_pool_table_f64_for(isa)
    _window_2x2(&window, tile, K)   # in a tile of the scratch (tile pixels a row)
    # C zeros (the padding the input transform reads), then each thread's: the
    # transforms' scratch, the group's transformed patches (positions x group x C) and
    # products (positions x group x Kp); pooled, a tile's pixels and the max pool's scratch
    thread_len = per_thread(tmp_len + positions * group * (C + Kp)
                            + (tile_len + tile * K if pool else 0), sizeof(floating))
    memory = <floating *> malloc((zeros_len + n_threads * thread_len) * sizeof(floating))
    if memory == NULL:
        return -1
    memset(memory, 0, C * sizeof(floating))
    zeros = memory
    for g in prange(n_groups, schedule="static", nogil=True, num_threads=n_threads):
        mine = memory + zeros_len + threadid() * thread_len
        tmp = mine
        v = tmp + tmp_len
        m = v + positions * group * C
        pconv = m + positions * group * Kp
        t0 = g * group
        count = min(group, n_tiles - t0)
        # 1. the tiles' input patches, transformed: v[p, i, c]
        for i in range(count):
            t = t0 + i
            n = t // per_image
            ti = (t % per_image) // tiles_w
            tj = t % tiles_w
            row = <int> (tile * ti - pad_top)
            col = <int> (tile * tj - pad_left)
            _input_tile(w32, w64, xbase + n * H * W * C, H, W, C, row, col, alpha, zeros,
                        tmp, v + i * C, group * C)
        # 2. per position p: m[p] (count, Kp) = v[p] (count, C) @ u[p] (C, Kp)
        for p in range(positions):
            for kb in range(n_kblocks):
                p0 = 0
                while p0 < count:
                    tp = <int> min(rows_max, count - p0)
                    if floating is float:
                        w32.gemm(nv, tp, v + (p * group + p0) * C, C,
                                 ubase + (p * n_kblocks + kb) * C * block, block,
                                 m + (p * group + p0) * Kp + kb * block, Kp)
                    else:
                        w64.gemm(nv, tp, v + (p * group + p0) * C, C,
                                 ubase + (p * n_kblocks + kb) * C * block, block,
                                 m + (p * group + p0) * Kp + kb * block, Kp)
                    p0 = p0 + tp
        # 3. the products transformed back into the output pixels
        for i in range(count):
            t = t0 + i
            n = t // per_image
            ti = (t % per_image) // tiles_w
            tj = t % tiles_w
            rows = <int> min(tile, Ho - tile * ti)
            cols = <int> min(tile, Wo - tile * tj)
            if pool == 0:
                if floating is float:
                    w32.output(m + i * Kp, group * Kp, K, bias, relu, tile, alpha,
                               tmp, obase + ((n * Ho + tile * ti) * Wo + tile * tj) * K,
                               Wo * K, rows, cols)
                else:
                    w64.output(m + i * Kp, group * Kp, K, bias, relu, tile, alpha,
                               tmp, obase + ((n * Ho + tile * ti) * Wo + tile * tj) * K,
                               Wo * K, rows, cols)
                continue
            # pooled: the tile in the scratch, then its windows (rows, cols even)
            if floating is float:
                w32.output(m + i * Kp, group * Kp, K, bias, relu, tile, alpha, tmp,
                           pconv, tile * K, rows, cols)
            else:
                w64.output(m + i * Kp, group * Kp, K, bias, relu, tile, alpha, tmp,
                           pconv, tile * K, rows, cols)
            for q in range(rows // 2):
                _pool_2x2_row(p32, p64, pool == 2, pconv + 2 * q * tile * K, K, cols // 2,
                              &window.window, pconv + tile_len,
                              obase + ((n * Hp + half * ti + q) * Wp + half * tj) * K)
    free(memory)
    return 0



def winograd_filter(
    const floating[:, :, :, ::1] w,       # IN (R, R, C, K)
    const double[:, ::1] g,               # IN (alpha, R): the form's G
    floating[:, :, :, ::1] packed,        # OUT (alpha^2, K blocks, C, block)
    int n_threads, int isa=-1,
):
    """packed[alpha * p + q, j, c, b] = (G w[:, :, c, k] G^T)[p, q], k = j * block + b,
    computed in double and rounded once (zeros for k >= K): the transformed filter of
    ``fastcnn.ops._winograd.transformed_filter``, one task per (input channel, block of
    output channels), every value written once. The same bits at every ``isa`` (-1: the
    best this CPU has): the table's filter does not contract multiply-adds."""
    cdef:
        int r = w.shape[0], alpha = g.shape[0], block = packed.shape[3]
        Py_ssize_t C = w.shape[2], K = w.shape[3], n_blocks = packed.shape[1]
        Py_ssize_t task, c, j
        const fc_wino_table_f32 *w32 = NULL
        const fc_wino_table_f64 *w64 = NULL
    isa = resolve_isa(isa, fc_cpu_isa())
    if floating is float:
        w32 = fc_wino_table_f32_for(isa)
    else:
        w64 = fc_wino_table_f64_for(isa)
    if w.shape[1] != r or g.shape[1] != r or packed.shape[0] != alpha * alpha \
            or packed.shape[2] != C or n_blocks * block < K or r > 5 or alpha > 8 \
            or block > 64:
        raise ValueError(f"no transformed filter of ({alpha * alpha}, blocks, {C}, block) "
                         f"for w of shape ({w.shape[0]}, {w.shape[1]}, {C}, {K}) and G "
                         f"({g.shape[0]}, {g.shape[1]}): got ({packed.shape[0]}, "
                         f"{n_blocks}, {packed.shape[2]}, {block})")
    if C * n_blocks == 0:
        return
    for task in prange(C * n_blocks, schedule="static", nogil=True, num_threads=n_threads):
        c = task // n_blocks
        j = task % n_blocks
        if floating is float:
            w32.filter(&w[0, 0, 0, 0], C * K, K, r, alpha, &g[0, 0], c, j * block,
                       <int> min(block, K - j * block), block, &packed[0, j, c, 0],
                       n_blocks * C * block)
        else:
            w64.filter(&w[0, 0, 0, 0], C * K, K, r, alpha, &g[0, 0], c, j * block,
                       <int> min(block, K - j * block), block, &packed[0, j, c, 0],
                       n_blocks * C * block)
