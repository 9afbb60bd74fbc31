/* bv_kernels.h - the kernel table. One implementation per ISA
 * (kernels/ref.c, kernels/x86_avx2.c, kernels/x86_avx512.c), all with the
 * same contract, all exact: integer results must match the scalar reference
 * bit for bit on every shape. dispatch.c fills `bv_kern` once from cpuid or
 * from BITVOICE_KERNEL=ref|avx2|avx512.
 *
 * Shapes: nb = padded cols / BV_QK. x / X rows are int8 activations padded
 * with zeros to nb * BV_QK. Row ranges [r0, r1) let the thread pool split a
 * matrix between workers.
 */
#ifndef BV_KERNELS_H
#define BV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "bv_format.h"

typedef struct {
    const char *name;
    /* decode: y[r] = sum_k T[r][k] * x[k] for r in [r0, r1). w: ternary rows. */
    void (*ternary_gemv)(const uint8_t *w, int nb, const int8_t *x, int32_t *y, int r0, int r1);
    /* prefill: Y[t][r] = sum_k T[r][k] * X[t][k], t < n, r in [r0, r1).
     * X rows are nb*BV_QK int8 apart; Y rows are ldy int32 apart. */
    void (*ternary_gemm)(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y, int ldy,
                         int r0, int r1);
    /* int8 LM head: y[r] = sum_k Q[r][k] * x[k]; Q rows nb*BV_QK bytes apart. */
    void (*int8_gemv)(const int8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1);
    /* int4 LM head: same with the int4 layout (rows nb*64 bytes apart). */
    void (*int4_gemv)(const uint8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1);
} bv_kernels;

extern bv_kernels bv_kern;                 /* the active table */
extern const bv_kernels bv_kernels_ref;
#ifdef BV_HAVE_X86_SIMD
extern const bv_kernels bv_kernels_avx2;
extern const bv_kernels bv_kernels_avx512;
#endif

/* Fills bv_kern. `want` is NULL (auto: best the CPU has, unless the
 * BITVOICE_KERNEL environment variable names one) or "ref"/"avx2"/"avx512".
 * Returns 0, or -1 if the wanted path is unknown or the CPU lacks it. */
int bv_kernels_select(const char *want);
/* Which paths this CPU can run, as a bit set: 1 ref, 2 avx2, 4 avx512. */
unsigned bv_kernels_supported(void);

#endif
