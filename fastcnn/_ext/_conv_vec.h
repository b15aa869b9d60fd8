/* Vector type, loads and stores of one (element type, instruction set), shared by the
 * convolution micro-kernel families; included once per instance by _conv_microkernel.h
 * (no include guard). Loads and stores go through memcpy: rows and tiles are not
 * aligned to the vector size. */
typedef FC_T FC_NAME(vec) __attribute__((vector_size(FC_VBYTES)));

static inline FC_NAME(vec) FC_NAME(load)(const FC_T *p)
{
    FC_NAME(vec) v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}

static inline void FC_NAME(store)(FC_T *p, FC_NAME(vec) v)
{
    __builtin_memcpy(p, &v, sizeof(v));
}

