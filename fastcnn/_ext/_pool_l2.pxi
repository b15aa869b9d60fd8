# L2 pooling, included by _pool.pyx: y = sqrt(sum of x^2 over each window), and its
# gradient dx = dy * x / y summed over the windows holding each element (0 where y == 0).


def l2_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads, int isa=-1,
):
    """y = sqrt of the sum of squares of each pool_h x pool_w window."""
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t Ho = y.shape[1], Wo = y.shape[2]
        Py_ssize_t n_rows = n_images * Ho
        Py_ssize_t row, n, oh
        const floating *xbase
        floating *ybase
        fc_pool_window window
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    try:
        for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
            n = row // Ho
            oh = row % Ho
            if floating is float:
                k32.l2_row(xbase + (n * H + oh * stride_h) * W * C, C, Wo, stride_w, &window,
                           ybase + row * Wo * C)
            else:
                k64.l2_row(xbase + (n * H + oh * stride_h) * W * C, C, Wo, stride_w, &window,
                           ybase + row * Wo * C)
    finally:
        _window_free(&window)


def l2_pool2d_backward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C), the forward input
    const floating[:, :, :, ::1] y,       # IN (N, Ho, Wo, C), the forward output
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads, int isa=-1,
):
    """dx = 0, then (dy / y) * x is added to every element of its window (0 where y == 0)."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t n, oh, out_row
        floating *dxbase
        floating *dximg
        const floating *ximg
        const floating *xbase
        const floating *ybase = NULL
        const floating *dybase = NULL
        fc_pool_window window
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images == 0 or image_size == 0:
        return
    xbase = &x[0, 0, 0, 0]
    dxbase = &dx[0, 0, 0, 0]
    if Ho > 0 and Wo > 0:
        ybase = &y[0, 0, 0, 0]
        dybase = &dy[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    try:
        # by image, output rows in order: overlapping windows add up in a fixed order
        for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
            dximg = dxbase + n * image_size
            ximg = xbase + n * image_size
            memset(dximg, 0, image_size * sizeof(floating))
            if dybase == NULL:
                continue
            for oh in range(Ho):
                out_row = (n * Ho + oh) * Wo * C
                if floating is float:
                    k32.l2_backward_row(dximg + oh * stride_h * W * C,
                                        ximg + oh * stride_h * W * C, C, Wo, stride_w,
                                        &window, ybase + out_row, dybase + out_row)
                else:
                    k64.l2_backward_row(dximg + oh * stride_h * W * C,
                                        ximg + oh * stride_h * W * C, C, Wo, stride_w,
                                        &window, ybase + out_row, dybase + out_row)
    finally:
        _window_free(&window)
