/* x86_avx512.c - AVX-512 VNNI kernels (vpdpbusd: u8 x s8 -> int32, no
 * saturation). Compiled alone with -mavx512f -mavx512bw -mavx512vl
 * -mavx512vnni (setup.py); dispatch.c only selects this table when cpuid and
 * XGETBV say the CPU and the OS support it. Every result is exact and equal
 * to kernels/ref.c bit for bit.
 *
 * The one identity every ternary kernel uses: a stored code is c = w + 1 in
 * {0, 1, 2}, an unsigned byte, so
 *     sum_k w[k] * x[k] = sum_k c[k] * x[k] - sum_k x[k]
 * and vpdpbusd takes c as its unsigned operand and the int8 activations as
 * its signed one; sum(x) is computed once per token, not per row.
 *
 * Decode GEMV streams the packed weights once (memory-bound): 8 rows per
 * iteration share the activation registers. Prefill GEMM is compute-bound:
 * weights are unpacked once per 8-row x (up to) 3072-column tile into a 24 KB L1
 * buffer of plain codes, then reused by every token (register tile 8 rows x
 * 3 tokens = 24 accumulators), so the inner loop is nothing but vpdpbusd.
 */
#if defined(__x86_64__) || defined(_M_X64)

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "x86_avx512.c must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

#include <immintrin.h>

#include "bv_kernels.h"

#define BV_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Tile sizes, in one place. GEMV_ROWS rows share one activation load.
 * GEMM: GEMM_ROWS x GEMM_TOKENS int32 accumulators (24 of the 32 zmm), and a
 * K chunk of GEMM_KC_BLOCKS blocks so that the unpacked codes of GEMM_ROWS
 * rows (8 * 3072 bytes = 24 KB) stay in L1 while all tokens pass over them.
 * GEMM_TOKEN_GROUP bounds the per-call stack array of per-token sum(x). */
#define GEMV_ROWS 8
#define GEMM_ROWS 8
#define GEMM_TOKENS 3
#define GEMM_KC_BLOCKS 24
#define GEMM_TOKEN_GROUP 240
/* Prefetch distance for streamed weight rows, in bytes ahead of the load. */
#define PREFETCH_AHEAD 256

/* ---- small helpers ------------------------------------------------------ */

/* sum of n int8 values (n a multiple of 64) */
static int32_t sum_i8(const int8_t *x, size_t n) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512();
    for (size_t k = 0; k < n; k += 64)
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512((const void *)(x + k)));
    return _mm512_reduce_add_epi32(acc);
}

/* Eight vectors of 16 int32 lanes -> one vector of their eight lane sums, in
 * order (v[0]'s sum in lane 0). A hadd tree costs ~4 ops per output instead
 * of ~9 for eight separate full reductions. */
BV_ALWAYS_INLINE __m256i reduce8(const __m512i v[8]) {
    __m256i h[8];
    for (int i = 0; i < 8; i++)
        h[i] = _mm256_add_epi32(_mm512_castsi512_si256(v[i]), _mm512_extracti64x4_epi64(v[i], 1));
    __m256i s01 = _mm256_hadd_epi32(h[0], h[1]), s23 = _mm256_hadd_epi32(h[2], h[3]);
    __m256i s45 = _mm256_hadd_epi32(h[4], h[5]), s67 = _mm256_hadd_epi32(h[6], h[7]);
    __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                            _mm256_permute2x128_si256(s0123, s4567, 0x31));
}

/* ---- ternary GEMV (decode) -----------------------------------------------
 * One 32-byte block is broadcast to both halves of a zmm. Masking (no shift)
 * with 0x03|0x0C gives [c0 | 4*c1] = codes of weights 0..63 (the upper 32
 * scaled by 4), which line up with x[0..63]; masking with 0x30|0xC0 gives
 * [16*c2 | 64*c3] for x[64..127]. The scale of each lane is fixed, so the
 * accumulators are shifted back exactly once per row (arithmetic shift of a
 * multiple of 4^q). Per 32 weight bytes: 1 load, 2 and, 2 vpdpbusd.
 * Range: a lane of `b` gains at most 4*128*128 = 2^16 per block, so this is
 * exact for nb < 32768 (4 million columns). */
BV_ALWAYS_INLINE __m512i ternary_fix_scale(__m512i a, __m512i b) {
    const __m512i sa = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(2), 1);
    const __m512i sb =
        _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(6), 1);
    return _mm512_add_epi32(_mm512_srav_epi32(a, sa), _mm512_srav_epi32(b, sb));
}

static void avx512_ternary_gemv(const uint8_t *w, int nb, const int8_t *x, int32_t *y, int r0,
                                int r1) {
    const size_t rb = (size_t)nb * BV_BLOCK_BYTES;
    const int32_t sx = sum_i8(x, (size_t)nb * BV_QK);
    const __m512i m_a = _mm512_inserti64x4(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C), 1);
    const __m512i m_b =
        _mm512_inserti64x4(_mm512_set1_epi8(0x30), _mm256_set1_epi8((char)0xC0), 1);
    int r = r0;
    for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {
        const uint8_t *wr = w + (size_t)r * rb;
        __m512i a[GEMV_ROWS], b[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) a[i] = b[i] = _mm512_setzero_si512();
        for (int k = 0; k < nb; k++) {
            const __m512i x0 = _mm512_loadu_si512((const void *)(x + (size_t)k * BV_QK));
            const __m512i x1 = _mm512_loadu_si512((const void *)(x + (size_t)k * BV_QK + 64));
#pragma GCC unroll 8
            for (int i = 0; i < GEMV_ROWS; i++) {
                const uint8_t *p = wr + (size_t)i * rb + (size_t)k * BV_BLOCK_BYTES;
                _mm_prefetch((const char *)(p + PREFETCH_AHEAD), _MM_HINT_T0);
                const __m512i bc = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
                a[i] = _mm512_dpbusd_epi32(a[i], _mm512_and_si512(bc, m_a), x0);
                b[i] = _mm512_dpbusd_epi32(b[i], _mm512_and_si512(bc, m_b), x1);
            }
        }
        __m512i v[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) v[i] = ternary_fix_scale(a[i], b[i]);
        _mm256_storeu_si256((__m256i *)(y + r), _mm256_sub_epi32(reduce8(v), _mm256_set1_epi32(sx)));
    }
    for (; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
        for (int k = 0; k < nb; k++) {
            const __m512i bc = _mm512_broadcast_i64x4(
                _mm256_loadu_si256((const __m256i *)(wr + (size_t)k * BV_BLOCK_BYTES)));
            a = _mm512_dpbusd_epi32(a, _mm512_and_si512(bc, m_a),
                                    _mm512_loadu_si512((const void *)(x + (size_t)k * BV_QK)));
            b = _mm512_dpbusd_epi32(b, _mm512_and_si512(bc, m_b),
                                    _mm512_loadu_si512((const void *)(x + (size_t)k * BV_QK + 64)));
        }
        y[r] = _mm512_reduce_add_epi32(ternary_fix_scale(a, b)) - sx;
    }
}

/* ---- ternary GEMM (prefill) ----------------------------------------------
 * unpack_codes: rows [r, r + nrows), blocks [kb0, kb0 + nkb) -> buf, one
 * plain code byte (0..2) per weight in column order, row i at i * nkb * 128.
 * A broadcast block shifted by 0|2 (per 64-bit half) and masked with 3 gives
 * the codes of weights 0..63; by 4|6, weights 64..127. */
static void unpack_codes(const uint8_t *w, size_t rb, int r, int nrows, int kb0, int nkb,
                         uint8_t *buf) {
    const __m512i three = _mm512_set1_epi8(3);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi64x(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi64(4), _mm256_set1_epi64x(6), 1);
    for (int i = 0; i < nrows; i++) {
        const uint8_t *src = w + (size_t)(r + i) * rb + (size_t)kb0 * BV_BLOCK_BYTES;
        uint8_t *dst = buf + (size_t)i * nkb * BV_QK;
        for (int k = 0; k < nkb; k++) {
            const __m512i bc = _mm512_broadcast_i64x4(
                _mm256_loadu_si256((const __m256i *)(src + (size_t)k * BV_BLOCK_BYTES)));
            _mm512_store_si512((void *)(dst + (size_t)k * BV_QK),
                               _mm512_and_si512(_mm512_srlv_epi64(bc, sh_a), three));
            _mm512_store_si512((void *)(dst + (size_t)k * BV_QK + 64),
                               _mm512_and_si512(_mm512_srlv_epi64(bc, sh_b), three));
        }
    }
}

/* One register tile: 8 rows of unpacked codes (row stride ldb bytes) times 3
 * tokens (x0..x2, already offset to this K chunk), ncols columns (a multiple
 * of 64). A tile with fewer than 3 tokens repeats a token pointer and stores
 * only T outputs per row. first: store partial - sum(x) (first K chunk), else
 * add the partial to Y.
 *
 * Why assembly: the loop is 3 activation loads, 8 code loads and 24 vpdpbusd
 * into 24 accumulators (zmm8..zmm31) per 64 columns. GCC 12 cannot keep 24
 * intrinsic accumulators in registers here (it spilled and copied them every
 * step, reaching ~35% of the vpdpbusd peak); with fixed registers there is
 * nothing left to spill. Row i of the tile is read at b + i*ldb, through three
 * bases (b, b3 = b + 3*ldb, b5 = b + 5*ldb) and the scaled index ldb. */
#define TILE_ROW(mem, a0, a1, a2)                                 \
    "vmovdqa64 " mem ", %%zmm3\n\t"                               \
    "vpdpbusd %%zmm0, %%zmm3, %%zmm" #a0 "\n\t"                   \
    "vpdpbusd %%zmm1, %%zmm3, %%zmm" #a1 "\n\t"                   \
    "vpdpbusd %%zmm2, %%zmm3, %%zmm" #a2 "\n\t"
#define ZERO3(a0, a1, a2)                                                            \
    "vpxord %%zmm" #a0 ", %%zmm" #a0 ", %%zmm" #a0 "\n\t"                            \
    "vpxord %%zmm" #a1 ", %%zmm" #a1 ", %%zmm" #a1 "\n\t"                            \
    "vpxord %%zmm" #a2 ", %%zmm" #a2 ", %%zmm" #a2 "\n\t"
#define STORE3(i, a0, a1, a2)                                                         \
    "vmovdqa64 %%zmm" #a0 ", " #i "*192+0(%[acc])\n\t"                                \
    "vmovdqa64 %%zmm" #a1 ", " #i "*192+64(%[acc])\n\t"                               \
    "vmovdqa64 %%zmm" #a2 ", " #i "*192+128(%[acc])\n\t"

__attribute__((noinline)) static void gemm_tile_8x3(const uint8_t *buf, size_t ldb,
                                                    const int8_t *x0, const int8_t *x1,
                                                    const int8_t *x2, size_t ncols, int T,
                                                    int32_t *Y, int ldy, int first,
                                                    const int32_t *sx) {
    _Alignas(64) int32_t acc[8 * 3 * 16]; /* acc[(row * 3 + token) * 16 + lane] */
    const uint8_t *b = buf, *b3 = buf + 3 * ldb, *b5 = buf + 5 * ldb;
    size_t k = 0, steps = ncols / 64;
    __asm__ volatile(
        ZERO3(8, 9, 10) ZERO3(11, 12, 13) ZERO3(14, 15, 16) ZERO3(17, 18, 19)
        ZERO3(20, 21, 22) ZERO3(23, 24, 25) ZERO3(26, 27, 28) ZERO3(29, 30, 31)
        "1:\n\t"
        "vmovdqu64 (%[x0],%[k]), %%zmm0\n\t"
        "vmovdqu64 (%[x1],%[k]), %%zmm1\n\t"
        "vmovdqu64 (%[x2],%[k]), %%zmm2\n\t"
        TILE_ROW("(%[b])", 8, 9, 10)
        TILE_ROW("(%[b],%[ldb])", 11, 12, 13)
        TILE_ROW("(%[b],%[ldb],2)", 14, 15, 16)
        TILE_ROW("(%[b3])", 17, 18, 19)
        TILE_ROW("(%[b],%[ldb],4)", 20, 21, 22)
        TILE_ROW("(%[b5])", 23, 24, 25)
        TILE_ROW("(%[b5],%[ldb])", 26, 27, 28)
        TILE_ROW("(%[b5],%[ldb],2)", 29, 30, 31)
        "add $64, %[k]\n\t"
        "add $64, %[b]\n\t"
        "add $64, %[b3]\n\t"
        "add $64, %[b5]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        STORE3(0, 8, 9, 10) STORE3(1, 11, 12, 13) STORE3(2, 14, 15, 16) STORE3(3, 17, 18, 19)
        STORE3(4, 20, 21, 22) STORE3(5, 23, 24, 25) STORE3(6, 26, 27, 28) STORE3(7, 29, 30, 31)
        : [k] "+r"(k), [b] "+r"(b), [b3] "+r"(b3), [b5] "+r"(b5), [n] "+r"(steps)
        : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [ldb] "r"(ldb), [acc] "r"(acc)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
          "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
          "xmm30", "xmm31");
    for (int t = 0; t < T; t++) {
        __m512i v[8];
        for (int i = 0; i < 8; i++) v[i] = _mm512_load_si512((const void *)(acc + (i * 3 + t) * 16));
        int32_t *y = Y + (size_t)t * ldy;
        __m256i s = reduce8(v);
        s = first ? _mm256_sub_epi32(s, _mm256_set1_epi32(sx[t]))
                  : _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)y));
        _mm256_storeu_si256((__m256i *)y, s);
    }
}

/* The row tail (fewer than 8 rows left): one row times 3 tokens. */
static void gemm_tile_1x3(const uint8_t *buf, const int8_t *x0, const int8_t *x1, const int8_t *x2,
                          size_t ncols, int T, int32_t *Y, int ldy, int first, const int32_t *sx) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0;
    for (size_t k = 0; k < ncols; k += 64) {
        const __m512i wv = _mm512_load_si512((const void *)(buf + k));
        a0 = _mm512_dpbusd_epi32(a0, wv, _mm512_loadu_si512((const void *)(x0 + k)));
        a1 = _mm512_dpbusd_epi32(a1, wv, _mm512_loadu_si512((const void *)(x1 + k)));
        a2 = _mm512_dpbusd_epi32(a2, wv, _mm512_loadu_si512((const void *)(x2 + k)));
    }
    const int32_t s[3] = {_mm512_reduce_add_epi32(a0), _mm512_reduce_add_epi32(a1),
                          _mm512_reduce_add_epi32(a2)};
    for (int t = 0; t < T; t++) {
        int32_t *y = Y + (size_t)t * ldy;
        *y = first ? s[t] - sx[t] : *y + s[t];
    }
}

static void avx512_ternary_gemm(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y,
                                int ldy, int r0, int r1) {
    if (n <= 2) {
        /* Too few tokens to pay for unpacking: stream the packed rows per token. */
        for (int t = 0; t < n; t++)
            avx512_ternary_gemv(w, nb, X + (size_t)t * nb * BV_QK, Y + (size_t)t * ldy, r0, r1);
        return;
    }
    const size_t rb = (size_t)nb * BV_BLOCK_BYTES;
    const size_t ldx = (size_t)nb * BV_QK;
    _Alignas(64) uint8_t buf[GEMM_ROWS * GEMM_KC_BLOCKS * BV_QK];
    int32_t sx[GEMM_TOKEN_GROUP];
    /* equal K chunks of at most GEMM_KC_BLOCKS: a short last chunk would pay
     * the per-tile reduction for little work */
    const int n_chunks = (nb + GEMM_KC_BLOCKS - 1) / GEMM_KC_BLOCKS;
    const int kc = (nb + n_chunks - 1) / n_chunks;
    for (int tg = 0; tg < n; tg += GEMM_TOKEN_GROUP) {
        const int ng = n - tg < GEMM_TOKEN_GROUP ? n - tg : GEMM_TOKEN_GROUP;
        const int8_t *Xg = X + (size_t)tg * ldx;
        int32_t *Yg = Y + (size_t)tg * ldy;
        for (int t = 0; t < ng; t++) sx[t] = sum_i8(Xg + (size_t)t * ldx, ldx);
        for (int r = r0; r < r1; r += GEMM_ROWS) {
            const int nr = r1 - r < GEMM_ROWS ? r1 - r : GEMM_ROWS;
            for (int kb0 = 0; kb0 < nb; kb0 += kc) {
                const int nkb = nb - kb0 < kc ? nb - kb0 : kc;
                const size_t ldb = (size_t)nkb * BV_QK;
                unpack_codes(w, rb, r, nr, kb0, nkb, buf);
                for (int t0 = 0; t0 < ng; t0 += GEMM_TOKENS) {
                    const int T = ng - t0 < GEMM_TOKENS ? ng - t0 : GEMM_TOKENS;
                    const int8_t *x0 = Xg + (size_t)t0 * ldx + (size_t)kb0 * BV_QK;
                    const int8_t *x1 = T > 1 ? x0 + ldx : x0;
                    const int8_t *x2 = T > 2 ? x0 + 2 * ldx : x0;
                    int32_t *Yt = Yg + (size_t)t0 * ldy + r;
                    if (nr == GEMM_ROWS)
                        gemm_tile_8x3(buf, ldb, x0, x1, x2, ldb, T, Yt, ldy, kb0 == 0, sx + t0);
                    else
                        for (int i = 0; i < nr; i++)
                            gemm_tile_1x3(buf + (size_t)i * ldb, x0, x1, x2, ldb, T, Yt + i, ldy,
                                          kb0 == 0, sx + t0);
                }
            }
        }
    }
}

/* ---- int8 GEMV (LM head) ---------------------------------------------------
 * vpdpbusd needs one unsigned operand: u = x + 128 (x ^ 0x80) is, and
 * sum q*x = sum q*u - 128 * sum q. sum q comes from a second vpdpbusd with a
 * vector of ones. Both lanes may wrap for huge rows, but everything is
 * modular int32 arithmetic and the true result fits, so it is exact for any
 * nb. */
static void avx512_int8_gemv(const int8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1) {
    const size_t cols = (size_t)nb * BV_QK;
    const __m512i bias = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    int r = r0;
    for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {
        const int8_t *qr = q + (size_t)r * cols;
        __m512i a[GEMV_ROWS], s[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) a[i] = s[i] = _mm512_setzero_si512();
        for (size_t k = 0; k < cols; k += 64) {
            const __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)(x + k)), bias);
#pragma GCC unroll 8
            for (int i = 0; i < GEMV_ROWS; i++) {
                const int8_t *p = qr + (size_t)i * cols + k;
                _mm_prefetch((const char *)(p + 2 * PREFETCH_AHEAD), _MM_HINT_T0);
                const __m512i qv = _mm512_loadu_si512((const void *)p);
                a[i] = _mm512_dpbusd_epi32(a[i], u, qv);
                s[i] = _mm512_dpbusd_epi32(s[i], ones, qv);
            }
        }
        __m512i v[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) v[i] = _mm512_sub_epi32(a[i], _mm512_slli_epi32(s[i], 7));
        _mm256_storeu_si256((__m256i *)(y + r), reduce8(v));
    }
    for (; r < r1; r++) {
        const int8_t *qr = q + (size_t)r * cols;
        __m512i a = _mm512_setzero_si512(), s = _mm512_setzero_si512();
        for (size_t k = 0; k < cols; k += 64) {
            const __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)(x + k)), bias);
            const __m512i qv = _mm512_loadu_si512((const void *)(qr + k));
            a = _mm512_dpbusd_epi32(a, u, qv);
            s = _mm512_dpbusd_epi32(s, ones, qv);
        }
        y[r] = _mm512_reduce_add_epi32(_mm512_sub_epi32(a, _mm512_slli_epi32(s, 7)));
    }
}

/* ---- int4 GEMV (LM head) ---------------------------------------------------
 * A 64-byte group: low nibbles are the codes (v + 8, unsigned) of columns
 * 0..63, high nibbles of 64..127, so one load gives two code vectors that line
 * up with x[0..63] and x[64..127]. sum v*x = sum code*x - 8 * sum x. */
static void avx512_int4_gemv(const uint8_t *q, int nb, const int8_t *x, int32_t *y, int r0,
                             int r1) {
    const size_t rb = (size_t)nb * BV_I4_GROUP_BYTES;
    const int32_t sx8 = 8 * sum_i8(x, (size_t)nb * BV_QK);
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    int r = r0;
    for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {
        const uint8_t *qr = q + (size_t)r * rb;
        __m512i a[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) a[i] = _mm512_setzero_si512();
        for (int g = 0; g < nb; g++) {
            const __m512i x0 = _mm512_loadu_si512((const void *)(x + (size_t)g * BV_QK));
            const __m512i x1 = _mm512_loadu_si512((const void *)(x + (size_t)g * BV_QK + 64));
#pragma GCC unroll 8
            for (int i = 0; i < GEMV_ROWS; i++) {
                const uint8_t *p = qr + (size_t)i * rb + (size_t)g * BV_I4_GROUP_BYTES;
                _mm_prefetch((const char *)(p + 2 * PREFETCH_AHEAD), _MM_HINT_T0);
                const __m512i qv = _mm512_loadu_si512((const void *)p);
                a[i] = _mm512_dpbusd_epi32(a[i], _mm512_and_si512(qv, lo4), x0);
                a[i] = _mm512_dpbusd_epi32(a[i], _mm512_and_si512(_mm512_srli_epi16(qv, 4), lo4), x1);
            }
        }
        _mm256_storeu_si256((__m256i *)(y + r), _mm256_sub_epi32(reduce8(a), _mm256_set1_epi32(sx8)));
    }
    for (; r < r1; r++) {
        const uint8_t *qr = q + (size_t)r * rb;
        __m512i a = _mm512_setzero_si512();
        for (int g = 0; g < nb; g++) {
            const __m512i qv = _mm512_loadu_si512((const void *)(qr + (size_t)g * BV_I4_GROUP_BYTES));
            a = _mm512_dpbusd_epi32(a, _mm512_and_si512(qv, lo4),
                                    _mm512_loadu_si512((const void *)(x + (size_t)g * BV_QK)));
            a = _mm512_dpbusd_epi32(a, _mm512_and_si512(_mm512_srli_epi16(qv, 4), lo4),
                                    _mm512_loadu_si512((const void *)(x + (size_t)g * BV_QK + 64)));
        }
        y[r] = _mm512_reduce_add_epi32(a) - sx8;
    }
}

const bv_kernels bv_kernels_avx512 = {
    .name = "avx512",
    .ternary_gemv = avx512_ternary_gemv,
    .ternary_gemm = avx512_ternary_gemm,
    .int8_gemv = avx512_int8_gemv,
    .int4_gemv = avx512_int4_gemv,
};

#endif /* x86-64 */
