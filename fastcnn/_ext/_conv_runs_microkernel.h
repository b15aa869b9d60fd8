/* Kernels on runs of contiguous elements, one instance per (element type, instruction
 * set) through _conv_microkernel.h: the column-to-image adds of the data gradient, the
 * bias gradient's sums (with the relu's backward pass fused) and the channel expansion of
 * single-channel images for _conv_c1_microkernel.h.
 */

/* dst[q] += src[q] for q < n: full vectors, then 16-byte vectors, then single elements. */
static void FC_NAME(add_run)(FC_T *dst, const FC_T *src, long n)
{
    typedef FC_T small_vec __attribute__((vector_size(16)));
    enum { SMALL = (int)(16 / sizeof(FC_T)) };
    long q = 0;
    for (; q + FC_V <= n; q += FC_V)
        FC_NAME(store)(dst + q, FC_NAME(load)(dst + q) + FC_NAME(load)(src + q));
    for (; q + SMALL <= n; q += SMALL) {
        small_vec a, b;
        __builtin_memcpy(&a, dst + q, sizeof(a));
        __builtin_memcpy(&b, src + q, sizeof(b));
        a += b;
        __builtin_memcpy(dst + q, &a, sizeof(a));
    }
    for (; q < n; q++)
        dst[q] += src[q];
}

/* acc[q] += d[q] for q < n (in double, for the bias gradient); with y, first d[q] = 0 in
 * place wherever !(y[q] > 0) (a relu's backward pass, NaN in y included). */
static void FC_NAME(masked_sum)(FC_T *d, const FC_T *y, double *acc, long n)
{
    typedef FC_NAME(vec) vec;
    long q = 0;
    if (y) {
        for (; q + FC_V <= n; q += FC_V) {
            vec dv = FC_NAME(load)(d + q);
            const vec yv = FC_NAME(load)(y + q);
            typedef __typeof__(dv < dv) mask;
            dv = (vec)((mask)dv & (yv > 0));
            FC_NAME(store)(d + q, dv);
            /* each half of the vector to double and onto acc */
            typedef FC_T half_vec __attribute__((vector_size(FC_VBYTES / 2)));
            typedef double double_vec __attribute__((vector_size(FC_V / 2 * sizeof(double))));
            for (int h = 0; h < 2; h++) {
                half_vec part;
                double_vec sum;
                __builtin_memcpy(&part, (const char *)&dv + h * sizeof(part), sizeof(part));
                __builtin_memcpy(&sum, acc + q + h * (FC_V / 2), sizeof(sum));
                sum += __builtin_convertvector(part, double_vec);
                __builtin_memcpy(acc + q + h * (FC_V / 2), &sum, sizeof(sum));
            }
        }
        for (; q < n; q++) {
            const FC_T v = y[q] > 0 ? d[q] : 0;
            d[q] = v;
            acc[q] += v;
        }
    } else {
        for (; q < n; q++)
            acc[q] += d[q];
    }
}

/* For each of n rows: dst[j * K + k] = src[j] for j < W, k < K (1 <= K <= 16), src rows
 * ld_src apart and dst rows ld_dst apart. Whole vectors are each one permutation of a
 * vector of src (the pattern repeats every K / gcd(V, K) vectors), which may read past
 * a row's end but not past the first `readable` elements from src; the rest goes
 * element by element. */
static void FC_NAME(expand_rows)(const FC_T *src, long ld_src, long W, int K, FC_T *dst,
                                 long ld_dst, long n, long readable)
{
    typedef __typeof__(FC_NAME(load)(src) < FC_NAME(load)(src)) index_vec;
    const long L = W * K;
    int a = FC_V, b = K;
    while (b) {
        const int t = a % b;
        a = b;
        b = t;
    }
    const int period = K / a;   /* K / gcd(V, K) */
    /* vector p of a period starts at source element first[p]; lane l reads idx[p][l] on */
    index_vec idx[16];
    long first[16];
    long q = 0;
    int r = 0;
    for (int p = 0; p < period; p++) {
        first[p] = q;
        for (int l = 0; l < FC_V; l++) {
            idx[p][l] = q - first[p];
            if (++r == K) {
                r = 0;
                q++;
            }
        }
    }
    const long step = q;   /* source elements per period */
    for (long row = 0; row < n; row++) {
        const FC_T *s = src + row * ld_src;
        FC_T *d = dst + row * ld_dst;
        long v = 0, start = 0;
        for (;;) {
            int p = 0;
            for (; p < period; p++) {
                const long base = start + first[p];
                if ((v + 1) * FC_V > L || row * ld_src + base + FC_V > readable)
                    break;
                FC_NAME(store)(d + v * FC_V, __builtin_shuffle(FC_NAME(load)(s + base), idx[p]));
                v++;
            }
            if (p < period)
                break;
            start += step;
        }
        /* the rest element by element, the source index kept without division */
        long j = (v * FC_V) / K;
        int k = (int)(v * FC_V - j * K);
        for (long e = v * FC_V; e < L; e++) {
            d[e] = s[j];
            if (++k == K) {
                k = 0;
                j++;
            }
        }
    }
}

static const FC_TNAME(fc_conv_runs_table) FC_NAME(fc_conv_runs_table) = {
    .add_run = FC_NAME(add_run),
    .masked_sum = FC_NAME(masked_sum),
    .expand_rows = FC_NAME(expand_rows),
};
