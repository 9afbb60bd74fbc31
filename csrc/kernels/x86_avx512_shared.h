/* x86_avx512_shared.h - helpers of the files compiled with the AVX-512 flags
 * (kernels/x86_avx512.c and kernels/x86_amx.c); never included elsewhere. */
#ifndef BV_X86_AVX512_SHARED_H
#define BV_X86_AVX512_SHARED_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define BV_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Fewer tokens than this run as one GEMV each (measured: x86_avx512.c's
 * tile-size comment); the AMX GEMM takes over from the same count. */
#define GEMM_MIN_TOKENS 4

/* lanes [0, left) of 16 */
BV_ALWAYS_INLINE __mmask16 tail_mask(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* sum of n int8 values (n a multiple of 64) */
static inline int32_t sum_i8(const int8_t *x, size_t n) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512();
    for (size_t k = 0; k < n; k += 64)
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512((const void *)(x + k)));
    return _mm512_reduce_add_epi32(acc);
}

/* the 16 dword columns of 16 row vectors: out[j] lane i = v[i] dword j */
BV_ALWAYS_INLINE void transpose16(const __m512i v[16], __m512i out[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    /* u[4g + c], 128-bit lane L: rows 4g..4g+3 at dword column 4L + c */
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        const __m512i s = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
        const __m512i s2 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
        const __m512i q = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
        const __m512i q2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
        out[c] = _mm512_shuffle_i32x4(s, q, 0x88);
        out[8 + c] = _mm512_shuffle_i32x4(s, q, 0xDD);
        out[4 + c] = _mm512_shuffle_i32x4(s2, q2, 0x88);
        out[12 + c] = _mm512_shuffle_i32x4(s2, q2, 0xDD);
    }
}

#endif
