/* x86_avx512_t1.c - the T1 table that dispatch.c adds to the avx512 path when
 * cpuid reports AVX-512 VBMI.
 *
 * The T1 kernels no longer need VBMI: they live in x86_avx512.c (AVX-512 BW +
 * VNNI), where the GEMV extracts digits with vpmaddubsw (no table lookups)
 * and the GEMM reuses the 2-bit GEMM's register tiles. This table points at
 * them so that the VBMI hook in dispatch.c selects the same kernels; it can
 * go once dispatch.c stops asking for it.
 */
#if defined(__x86_64__) || defined(_M_X64)

#include "bv_kernels.h"

/* defined in x86_avx512.c (same contract as bv_kernels.t1_gemv / t1_gemm) */
void bv_avx512_t1_gemv(const uint8_t *w, int nb1, const int8_t *x, int32_t *y, int r0, int r1);
void bv_avx512_t1_gemm(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy,
                       int r0, int r1);

const bv_t1_kernels bv_t1_kernels_avx512vbmi = {
    .t1_gemv = bv_avx512_t1_gemv,
    .t1_gemm = bv_avx512_t1_gemm,
};

#endif
