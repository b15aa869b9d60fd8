/* Run-time choice of an instruction set, and tables of function pointers per kernel family.
 *
 * One build runs on any x86-64 (no -march flag): each micro-kernel template is compiled
 * once per (element type, vector width) under `#pragma GCC target`, and a driver picks
 * the instances for this CPU once, through a table, instead of switching on the
 * instruction set around every call (XNNPACK's configs are the model).
 *
 * A kernel family is declared once, in two headers:
 *   _NAME_microkernel.h  the template. It may use FC_T (float or double), FC_DOUBLE (0 or 1),
 *                        FC_VBYTES (vector bytes), FC_NAME(x) (x with a suffix unique to the
 *                        (type, instruction set)) and FC_TNAME(x) (x with the type's suffix
 *                        only), must #undef its own macros at the end, and ends with
 *                            static const FC_TNAME(fc_NAME_table) FC_NAME(fc_NAME_table) = {...};
 *   _NAME_kernels.h      the struct types fc_NAME_table_f32 / _f64, then
 *                            #define FC_MICROKERNEL "_NAME_microkernel.h"
 *                            #include "_dispatch_instances.h"
 *                            FC_TABLE_LOOKUP(fc_NAME_table)
 *                        which defines fc_NAME_table_f32_for(isa) and fc_NAME_table_f64_for(isa).
 * Families whose templates share helpers (the convolution's, see _conv_kernels.h) go
 * through one FC_MICROKERNEL that includes them all, since an instance may define the
 * helpers only once, and then one FC_TABLE_LOOKUP per family.
 * A driver takes the table of the detected (or requested) instruction set once per call,
 * outside its loops, and calls through it.
 */
#ifndef FASTCNN_DISPATCH_H
#define FASTCNN_DISPATCH_H

enum { FC_ISA_BASELINE = 0, FC_ISA_AVX2 = 1, FC_ISA_AVX512 = 2, FC_ISA_COUNT = 3 };

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86 1
#else
#define FC_X86 0
#endif

/* The best instruction set this CPU supports. */
static int fc_cpu_isa(void)
{
#if FC_X86
    __builtin_cpu_init();
    /* the AVX-512 instances are built for F + VL + DQ (every AVX-512 CPU but Xeon Phi) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq"))
        return FC_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FC_ISA_AVX2;
#endif
    return FC_ISA_BASELINE;
}

#define FC_PASTE2_(a, b) a##_##b
#define FC_PASTE2(a, b) FC_PASTE2_(a, b)
#define FC_PASTE3_(a, b, c) a##_##b##_##c
#define FC_PASTE3(a, b, c) FC_PASTE3_(a, b, c)

/* fc_NAME_table_f32_for(isa): the instances of one instruction set. Callers pass an isa
 * the CPU supports (the Cython side checks); a build without the x86 instances (another
 * architecture) has only the baseline. */
#if FC_X86
#define FC_TABLE_LOOKUP_ONE_(table, S)                                                   \
    static const table##_##S *table##_##S##_for(int isa)                                 \
    {                                                                                    \
        return isa == FC_ISA_AVX512 ? &table##_##S##_avx512                              \
             : isa == FC_ISA_AVX2 ? &table##_##S##_avx2 : &table##_##S##_base;           \
    }
#else
#define FC_TABLE_LOOKUP_ONE_(table, S)                                                   \
    static const table##_##S *table##_##S##_for(int isa)                                 \
    {                                                                                    \
        (void)isa;                                                                       \
        return &table##_##S##_base;                                                      \
    }
#endif
#define FC_TABLE_LOOKUP(table) FC_TABLE_LOOKUP_ONE_(table, f32) FC_TABLE_LOOKUP_ONE_(table, f64)

#endif
