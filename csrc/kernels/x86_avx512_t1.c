/* x86_avx512_t1.c - the T1 (1.6 bits/weight) ternary kernels for AVX-512
 * VNNI + VBMI. Compiled alone with -mavx512vbmi (setup.py); dispatch.c adds
 * them to the avx512 table only when cpuid reports VBMI, and then asks the
 * loader for the T1 layout (prefer_t1).
 *
 * Unpacking (bv_format.h): digit i of a byte q is T(y_i) with
 * y_0 = q, y_{i+1} = 3 * y_i mod 256 (two byte adds), and
 * T(y) = (3 * y) >> 8, a 256-entry table looked up with two vpermi2b (the
 * low 7 bits index 128 entries) and a blend on y's top bit. Each digit is 64
 * codes (w + 1, 0..2) that line up with 64 activations, summed by vpdpbusd;
 * sum(c * x) - sum(x) = sum(w * x). Exact, equal to kernels/ref.c.
 */
#if defined(__x86_64__) || defined(_M_X64)

#if !defined(__AVX512VBMI__) || !defined(__AVX512VNNI__)
#error "x86_avx512_t1.c must be compiled with -mavx512vbmi -mavx512vnni"
#endif

#include <immintrin.h>

#include "bv_kernels.h"

#define T1_GEMV_ROWS 4   /* rows per pass: they share the activation loads */
#define T1_GEMM_TOKENS 8 /* tokens per pass: one unpack serves them all */

typedef struct {
    __m512i t0, t1, t2, t3; /* T(y) for y in [0,64), [64,128), [128,192), [192,256) */
} t1_table;

static inline t1_table t1_table_load(void) {
    static __attribute__((aligned(64))) uint8_t tab[256];
    static int ready = 0;
    if (!ready) { /* benign race: every writer stores the same bytes */
        for (int y = 0; y < 256; y++) tab[y] = (uint8_t)((3 * y) >> 8);
        ready = 1;
    }
    t1_table t = {_mm512_load_si512(tab), _mm512_load_si512(tab + 64), _mm512_load_si512(tab + 128),
                  _mm512_load_si512(tab + 192)};
    return t;
}

static inline __m512i t1_codes(const t1_table *t, __m512i y) {
    __m512i lo = _mm512_permutex2var_epi8(t->t0, y, t->t1);
    __m512i hi = _mm512_permutex2var_epi8(t->t2, y, t->t3);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(y), lo, hi);
}

static inline __m512i times3(__m512i y) { return _mm512_add_epi8(y, _mm512_add_epi8(y, y)); }

/* sum of x over nb1 blocks, as int32 */
static int32_t sum_x(const int8_t *x, int nb1) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < nb1 * 5; k++) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(x + 64 * k));
    return _mm512_reduce_add_epi32(acc);
}

static void avx512_t1_gemv(const uint8_t *w, int nb1, const int8_t *x, int32_t *y, int r0, int r1) {
    const t1_table tab = t1_table_load();
    const size_t row_bytes = (size_t)nb1 * BV_T1_BLOCK_BYTES;
    const int32_t sx = sum_x(x, nb1);
    int r = r0;
    for (; r + T1_GEMV_ROWS <= r1; r += T1_GEMV_ROWS) {
        __m512i acc[T1_GEMV_ROWS];
        for (int i = 0; i < T1_GEMV_ROWS; i++) acc[i] = _mm512_setzero_si512();
        const uint8_t *row = w + (size_t)r * row_bytes;
        for (int b = 0; b < nb1; b++) {
            const int8_t *xb = x + (size_t)b * BV_T1_QK;
            __m512i yv[T1_GEMV_ROWS];
            for (int i = 0; i < T1_GEMV_ROWS; i++) {
                _mm_prefetch((const char *)(row + i * row_bytes + (b + 8) * BV_T1_BLOCK_BYTES), _MM_HINT_T0);
                yv[i] = _mm512_loadu_si512(row + i * row_bytes + (size_t)b * BV_T1_BLOCK_BYTES);
            }
            for (int d = 0; d < 5; d++) {
                __m512i xv = _mm512_loadu_si512(xb + 64 * d);
                for (int i = 0; i < T1_GEMV_ROWS; i++) {
                    acc[i] = _mm512_dpbusd_epi32(acc[i], t1_codes(&tab, yv[i]), xv);
                    if (d < 4) yv[i] = times3(yv[i]);
                }
            }
        }
        for (int i = 0; i < T1_GEMV_ROWS; i++) y[r + i] = _mm512_reduce_add_epi32(acc[i]) - sx;
    }
    for (; r < r1; r++) {
        __m512i acc = _mm512_setzero_si512();
        const uint8_t *row = w + (size_t)r * row_bytes;
        for (int b = 0; b < nb1; b++) {
            __m512i yv = _mm512_loadu_si512(row + (size_t)b * BV_T1_BLOCK_BYTES);
            for (int d = 0; d < 5; d++) {
                acc = _mm512_dpbusd_epi32(acc, t1_codes(&tab, yv), _mm512_loadu_si512(x + (size_t)b * BV_T1_QK + 64 * d));
                yv = times3(yv);
            }
        }
        y[r] = _mm512_reduce_add_epi32(acc) - sx;
    }
}

static void avx512_t1_gemm(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy, int r0,
                           int r1) {
    const t1_table tab = t1_table_load();
    const size_t row_bytes = (size_t)nb1 * BV_T1_BLOCK_BYTES, x_stride = (size_t)nb1 * BV_T1_QK;
    int32_t sx[T1_GEMM_TOKENS];
    for (int t0 = 0; t0 < n; t0 += T1_GEMM_TOKENS) {
        int nt = n - t0 < T1_GEMM_TOKENS ? n - t0 : T1_GEMM_TOKENS;
        for (int t = 0; t < nt; t++) sx[t] = sum_x(X + (size_t)(t0 + t) * x_stride, nb1);
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = w + (size_t)r * row_bytes;
            __m512i acc[T1_GEMM_TOKENS];
            for (int t = 0; t < T1_GEMM_TOKENS; t++) acc[t] = _mm512_setzero_si512();
            for (int b = 0; b < nb1; b++) {
                __m512i yv = _mm512_loadu_si512(row + (size_t)b * BV_T1_BLOCK_BYTES);
                for (int d = 0; d < 5; d++) {
                    __m512i c = t1_codes(&tab, yv);
                    if (d < 4) yv = times3(yv);
                    const int8_t *xb = X + (size_t)t0 * x_stride + (size_t)b * BV_T1_QK + 64 * d;
                    for (int t = 0; t < nt; t++)
                        acc[t] = _mm512_dpbusd_epi32(acc[t], c, _mm512_loadu_si512(xb + (size_t)t * x_stride));
                }
            }
            for (int t = 0; t < nt; t++) Y[(size_t)(t0 + t) * ldy + r] = _mm512_reduce_add_epi32(acc[t]) - sx[t];
        }
    }
}

const bv_t1_kernels bv_t1_kernels_avx512vbmi = {
    .t1_gemv = avx512_t1_gemv,
    .t1_gemm = avx512_t1_gemm,
};

#endif
