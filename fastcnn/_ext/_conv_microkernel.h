/* The convolution micro-kernel families of one (element type, instruction set), for
 * _dispatch_instances.h (see _conv_kernels.h): one pass instantiates them all because
 * they share _conv_vec.h's helpers, which an instance may define only once. */
#define FC_V ((int)(FC_VBYTES / sizeof(FC_T)))
#include "_conv_vec.h"
#include "_conv_forward_microkernel.h"
#include "_conv_wgrad_microkernel.h"
#include "_conv_c1_pool_microkernel.h"
#include "_conv_c1_microkernel.h"
#include "_conv_runs_microkernel.h"
#undef FC_V
#undef FC_PL
