/* Instantiates the template named by FC_MICROKERNEL for float and double at each
 * instruction set (see _dispatch.h). No include guard: included once per family. */
#include "_dispatch.h"

#ifndef FC_MICROKERNEL
#error "define FC_MICROKERNEL as the template's file name before including this header"
#endif

#define FC_NAME(x) FC_PASTE3(x, FC_TS, FC_IS)
#define FC_TNAME(x) FC_PASTE2(x, FC_TS)

/* baseline: 16-byte vectors (SSE2 on x86-64, NEON on arm64, generic code elsewhere) */
#define FC_VBYTES 16
#define FC_IS base
#define FC_T float
#define FC_DOUBLE 0
#define FC_TS f32
#include FC_MICROKERNEL
#undef FC_T
#undef FC_DOUBLE
#undef FC_TS
#define FC_T double
#define FC_DOUBLE 1
#define FC_TS f64
#include FC_MICROKERNEL
#undef FC_T
#undef FC_DOUBLE
#undef FC_TS
#undef FC_IS
#undef FC_VBYTES

#if FC_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FC_VBYTES 32
#define FC_IS avx2
#define FC_T float
#define FC_DOUBLE 0
#define FC_TS f32
#include FC_MICROKERNEL
#undef FC_T
#undef FC_DOUBLE
#undef FC_TS
#define FC_T double
#define FC_DOUBLE 1
#define FC_TS f64
#include FC_MICROKERNEL
#undef FC_T
#undef FC_DOUBLE
#undef FC_TS
#undef FC_IS
#undef FC_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#define FC_VBYTES 64
#define FC_IS avx512
#define FC_T float
#define FC_DOUBLE 0
#define FC_TS f32
#include FC_MICROKERNEL
#undef FC_T
#undef FC_DOUBLE
#undef FC_TS
#define FC_T double
#define FC_DOUBLE 1
#define FC_TS f64
#include FC_MICROKERNEL
#undef FC_T
#undef FC_DOUBLE
#undef FC_TS
#undef FC_IS
#undef FC_VBYTES
#pragma GCC pop_options
#endif

#undef FC_NAME
#undef FC_TNAME
#undef FC_MICROKERNEL
