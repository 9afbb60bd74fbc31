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
 * weights are unpacked once per 32-row x 1024-column chunk into a 32 KB L1
 * buffer of codes with rows in lanes, then reused by every token (register
 * tile 32 rows x 12 tokens = 24 accumulators), so the inner loop is loads,
 * broadcasts and vpdpbusd only, and no output needs a horizontal sum.
 */
#if defined(__x86_64__) || defined(_M_X64)

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "x86_avx512.c must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bv_kernels.h"
#include "x86_avx512_shared.h"
#include "x86_prefetch.h"


/* Tile sizes, in one place. GEMV_ROWS rows share one activation load.
 * GEMM: GEMM_ROWS rows (2 zmm of 16 lanes) x GEMM_TOKENS tokens = 24
 * accumulators; the last tokens go GEMM_TOKENS_TAIL at a time. A K chunk of
 * GEMM_KC_BLOCKS blocks keeps the unpacked codes of GEMM_ROWS rows
 * (32 * 1024 bytes = 32 KB) in L1 while every token passes over them. Fewer
 * than GEMM_MIN_TOKENS tokens run as one GEMV each. Measured on a 2560x2560
 * matrix: with the weights warm in cache GEMVs win up to ~7 tokens, but in a
 * forward pass the weights come from DRAM and each GEMV streams them again,
 * so the GEMM already wins at 4. */
#define GEMV_ROWS 8
#define GEMM_ROWS 32
#define GEMM_TOKENS 12
#define GEMM_TOKENS_TAIL 4
#define GEMM_KC_BLOCKS 8
#define GEMM_KC_T1_BLOCKS 3 /* 960 columns: 30 KB of codes */
#define GEMM_KC_COLS (GEMM_KC_BLOCKS * BV_QK)
/* GEMM_MIN_TOKENS: x86_avx512_shared.h (the AMX path uses it too) */
/* ---- small helpers ------------------------------------------------------ */

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
    const stream_ahead ahead = stream_distances(GEMV_ROWS * rb);
    stream_start(w + (size_t)r0 * rb, (size_t)(r1 - r0) * rb, ahead);
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
                if (!(k & 1)) stream_prefetch(p, ahead);
                const __m512i bc = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
                a[i] = _mm512_dpbusd_epi32(a[i], _mm512_and_si512(bc, m_a), x0);
                b[i] = _mm512_dpbusd_epi32(b[i], _mm512_and_si512(bc, m_b), x1);
            }
        }
        __m512i v[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) v[i] = ternary_fix_scale(a[i], b[i]);
        const __m256i s = _mm256_sub_epi32(reduce8(v), _mm256_set1_epi32(sx));
        _mm256_storeu_si256((__m256i *)(y + r), s);
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

/* ---- T1 GEMV (decode, 1.6 bits/weight) -----------------------------------
 * Digit extraction without tables (bv_format.h: digit i of a byte q is
 * floor(3 * y_i / 256) with y_0 = q, y_{i+1} = 3 * y_i mod 256). vpmaddubsw
 * with the byte pattern (3, 0) multiplies the even bytes by 3 into 16-bit
 * lanes: 3 * y = 256 * floor(3y / 256) + (3y mod 256), so the high byte of
 * each lane is the digit's code and the low byte is the next y. Applying
 * (3, 0) again to that result multiplies the low byte only (the code byte is
 * multiplied by 0), so one vpmaddubsw per digit walks the whole chain; the
 * odd bytes start with (0, 3) and then follow the same chain. No value
 * exceeds 765, so the signed 16-bit saturation never happens.
 * The codes sit in the odd (high) bytes of the lanes and the next y values in
 * the even bytes: vpdpbusd against activations that are zero at even bytes
 * sums exactly code * x. Those activations are made once per call: for the
 * even chain, x << 8 per 16-bit lane (activation j moves to byte j + 1); for
 * the odd chain, x with its even bytes cleared.
 * Per 64 weight bytes (320 weights): 10 vpmaddubsw + 10 vpdpbusd, no shuffles.
 * Range: a lane gains at most 4 * 2 * 128 per vpdpbusd, 10 per block: exact
 * for any row that fits an int. */
#define T1_GEMV_ROWS 4
#define T1_X_SLICE_BLOCKS 32 /* 10240 columns: 20 KB of prepared activations */

/* x (nb1 blocks) -> xe, xo: per block 5 even-chain then 5 odd-chain vectors */
static void t1_prepare_x(const int8_t *x, int nb1, __m512i *xp) {
    const __m512i odd = _mm512_set1_epi16((short)0xFF00);
    for (int b = 0; b < nb1; b++)
        for (int d = 0; d < 5; d++) {
            const __m512i v = _mm512_loadu_si512((const void *)(x + (size_t)b * BV_T1_QK + 64 * d));
            _mm512_store_si512((void *)&xp[b * 10 + d], _mm512_slli_epi16(v, 8));
            _mm512_store_si512((void *)&xp[b * 10 + 5 + d], _mm512_and_si512(v, odd));
        }
}

/* acc_e/acc_o += one 64-byte T1 block of codes dotted with its prepared x;
 * far: the L2 prefetch to issue halfway through (NULL: none), which spreads
 * the row loop's prefetches over its compute */
#define T1_BLOCK_DOT(s, xb, ae, ao, far)                                                  \
    do {                                                                                  \
        __m512i pe_ = _mm512_maddubs_epi16((s), k30), po_ = _mm512_maddubs_epi16((s), k03); \
        for (int d_ = 0; d_ < 5; d_++) {                                                  \
            (ae) = _mm512_dpbusd_epi32((ae), pe_, _mm512_load_si512((const void *)&(xb)[d_])); \
            (ao) = _mm512_dpbusd_epi32((ao), po_, _mm512_load_si512((const void *)&(xb)[5 + d_])); \
            if (d_ == 2 && (far)) prefetch_l2(far);                                       \
            if (d_ < 4) {                                                                 \
                pe_ = _mm512_maddubs_epi16(pe_, k30);                                     \
                po_ = _mm512_maddubs_epi16(po_, k30);                                     \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* y[r] (+)= dot of rows [r0, r1) with prepared x over nb1 blocks, minus sx.
 * Rows are rb bytes apart; add: accumulate into y instead of storing. */
static void t1_gemv_prepared(const uint8_t *w, size_t rb, int nb1, const __m512i *xp, int32_t sx,
                             int add, int32_t *y, int r0, int r1) {
    const __m512i k30 = _mm512_set1_epi16(3), k03 = _mm512_set1_epi16(3 << 8);
    const stream_ahead ahead = stream_distances(T1_GEMV_ROWS * rb);
    stream_start(w + (size_t)r0 * rb, (size_t)(r1 - r0) * rb, ahead);
    int r = r0;
    for (; r + T1_GEMV_ROWS <= r1; r += T1_GEMV_ROWS) {
        const uint8_t *wr = w + (size_t)r * rb;
        __m512i ae[T1_GEMV_ROWS], ao[T1_GEMV_ROWS];
        for (int i = 0; i < T1_GEMV_ROWS; i++) ae[i] = ao[i] = _mm512_setzero_si512();
        for (int b = 0; b < nb1; b++) {
            const __m512i *xb = xp + b * 10;
#pragma GCC unroll 8
            for (int i = 0; i < T1_GEMV_ROWS; i++) {
                const uint8_t *p = wr + (size_t)i * rb + (size_t)b * BV_T1_BLOCK_BYTES;
                prefetch_l1(p + ahead.near);
                const __m512i q = _mm512_loadu_si512((const void *)p);
                T1_BLOCK_DOT(q, xb, ae[i], ao[i], p + ahead.far);
            }
        }
        for (int i = 0; i < T1_GEMV_ROWS; i++) {
            const int32_t v = _mm512_reduce_add_epi32(_mm512_add_epi32(ae[i], ao[i])) - sx;
            y[r + i] = add ? y[r + i] + v : v;
        }
    }
    for (; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        __m512i ae = _mm512_setzero_si512(), ao = _mm512_setzero_si512();
        for (int b = 0; b < nb1; b++) {
            const __m512i q = _mm512_loadu_si512((const void *)(wr + (size_t)b * BV_T1_BLOCK_BYTES));
            T1_BLOCK_DOT(q, xp + b * 10, ae, ao, (const uint8_t *)NULL);
        }
        const int32_t v = _mm512_reduce_add_epi32(_mm512_add_epi32(ae, ao)) - sx;
        y[r] = add ? y[r] + v : v;
    }
}

/* Columns go in slices of T1_X_SLICE_BLOCKS blocks (one slice for every
 * matrix of the 2B model), so the prepared activations live on the stack. */
void bv_avx512_t1_gemv(const uint8_t *w, int nb1, const int8_t *x, int32_t *y, int r0, int r1) {
    const size_t rb = (size_t)nb1 * BV_T1_BLOCK_BYTES;
    const int32_t sx = sum_i8(x, (size_t)nb1 * BV_T1_QK);
    _Alignas(64) __m512i xp[T1_X_SLICE_BLOCKS * 10];
    for (int b0 = 0; b0 < nb1; b0 += T1_X_SLICE_BLOCKS) {
        const int nbs = nb1 - b0 < T1_X_SLICE_BLOCKS ? nb1 - b0 : T1_X_SLICE_BLOCKS;
        t1_prepare_x(x + (size_t)b0 * BV_T1_QK, nbs, xp);
        t1_gemv_prepared(w + (size_t)b0 * BV_T1_BLOCK_BYTES, rb, nbs, xp, b0 ? 0 : sx, b0 > 0, y,
                         r0, r1);
    }
}

/* ---- ternary GEMM (prefill) ----------------------------------------------
 * Layout for vpdpbusd with rows in lanes: one zmm of codes holds 4
 * consecutive columns (one dword) of 16 rows, and the 4 activations of a
 * token at those columns are broadcast to all lanes (vpbroadcastd), so each
 * accumulator lane is one (row, token) output: no horizontal sums at all, and
 * the results are stored straight into Y (16 rows of one token are contiguous
 * there).
 *
 * Per K chunk of GEMM_KC_BLOCKS blocks:
 *   pack_x:      activations of all tokens, per token tile, as
 *                xs[step][token] dwords (a tile's broadcasts are consecutive)
 *   unpack_rows: 32 rows of codes as w[step][2 x 16 rows] dwords, a 16x16
 *                dword transpose per 16 rows x 64 columns (32 KB, L1)
 *   gemm_tile_*: 2 x 12 (or 2 x 4 for the last tokens) accumulators;
 *                per step 2 code loads, 12 broadcasts, 24 vpdpbusd.
 * Rows beyond r1 are zero codes whose lanes are masked off at the store;
 * tokens beyond n are zero activations whose outputs are not stored. */

/* rows [r, r + nrows) (nrows <= GEMM_ROWS; missing rows are zero codes),
 * blocks [kb0, kb0 + nkb) -> buf[step][half][16 lanes] dwords, step = 4 cols */
static void unpack_rows(const uint8_t *w, size_t rb, int r, int nrows, int c0, int ncols,
                        uint8_t *buf) {
    const int kb0 = c0 / BV_QK, nkb = ncols / BV_QK;
    const __m512i three = _mm512_set1_epi8(3);
    /* a block broadcast to both halves, shifted by 0|2 (4|6) per 64-bit half
     * and masked: the codes of weights 0..63 (64..127) in column order */
    const __m512i sh_a = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi64x(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi64(4), _mm256_set1_epi64x(6), 1);
    for (int half = 0; half < GEMM_ROWS / 16; half++) {
        for (int k = 0; k < nkb; k++) {
            __m512i a[16], b[16], out[16];
            for (int i = 0; i < 16; i++) {
                const int row = half * 16 + i;
                if (row >= nrows) {
                    a[i] = b[i] = _mm512_setzero_si512();
                    continue;
                }
                const uint8_t *p = w + (size_t)(r + row) * rb + (size_t)(kb0 + k) * BV_BLOCK_BYTES;
                const __m512i bc = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
                a[i] = _mm512_and_si512(_mm512_srlv_epi64(bc, sh_a), three);
                b[i] = _mm512_and_si512(_mm512_srlv_epi64(bc, sh_b), three);
            }
            uint8_t *dst = buf + ((size_t)k * (BV_QK / 4) * (GEMM_ROWS / 16) + half) * 64;
            transpose16(a, out);
            for (int j = 0; j < 16; j++)
                _mm512_store_si512((void *)(dst + (size_t)j * GEMM_ROWS * 4), out[j]);
            dst += (size_t)16 * GEMM_ROWS * 4;
            transpose16(b, out);
            for (int j = 0; j < 16; j++)
                _mm512_store_si512((void *)(dst + (size_t)j * GEMM_ROWS * 4), out[j]);
        }
    }
}

/* token tiles: GEMM_TOKENS wide while that many (padded) tokens are left,
 * then GEMM_TOKENS_TAIL; n_pad is a multiple of GEMM_TOKENS_TAIL */
static inline int tile_width(int t0, int n_pad) {
    return n_pad - t0 >= GEMM_TOKENS ? GEMM_TOKENS : GEMM_TOKENS_TAIL;
}

/* tokens [0, n_pad) of X (rows ldx apart), columns of blocks [kb0, kb0+nkb)
 * -> xs: per tile (at t0 * kcols bytes), xs[step][token of tile] dwords */
static void pack_x(const int8_t *X, size_t ldx, int n, int n_pad, int c0, int ncols, int8_t *xs) {
    const int steps = ncols / 4;
    for (int t0 = 0; t0 < n_pad;) {
        const int tw = tile_width(t0, n_pad);
        int32_t *dst = (int32_t *)(xs + (size_t)t0 * ncols);
        for (int t = 0; t < tw; t++) {
            const int tok = t0 + t;
            if (tok >= n) {
                for (int s = 0; s < steps; s++) dst[(size_t)s * tw + t] = 0;
                continue;
            }
            const int32_t *src = (const int32_t *)(X + (size_t)tok * ldx + c0);
            for (int s = 0; s < steps; s++) dst[(size_t)s * tw + t] = src[s];
        }
        t0 += tw;
    }
}

/* Why assembly: 24 accumulators + 2 code vectors + a broadcast is 27 zmm;
 * GCC 12 spills and copies intrinsic accumulators in such a loop (it reached
 * a third of the vpdpbusd rate), fixed registers leave nothing to spill.
 * AT&T order: vpdpbusd s8_src, u8_src, acc. */
#define TOK(t, a0, a1)                                      \
    "vpbroadcastd " #t "*4(%[xs]), %%zmm2\n\t"              \
    "vpdpbusd %%zmm2, %%zmm0, %%zmm" #a0 "\n\t"             \
    "vpdpbusd %%zmm2, %%zmm1, %%zmm" #a1 "\n\t"
#define ZERO2(a0, a1)                                       \
    "vpxord %%zmm" #a0 ", %%zmm" #a0 ", %%zmm" #a0 "\n\t"  \
    "vpxord %%zmm" #a1 ", %%zmm" #a1 ", %%zmm" #a1 "\n\t"
#define STORE2(t, a0, a1)                                   \
    "vmovdqa64 %%zmm" #a0 ", " #t "*128(%[acc])\n\t"       \
    "vmovdqa64 %%zmm" #a1 ", " #t "*128+64(%[acc])\n\t"
#define TILE_CLOBBERS                                                                       \
    "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",  \
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",    \
        "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27"

/* acc[t][half][16 lanes] += codes(w) x xs over `steps` 4-column steps */
static void gemm_tile_12(const uint8_t *w, const int8_t *xs, size_t steps, int32_t *acc) {
    __asm__ volatile(
        ZERO2(4, 5) ZERO2(6, 7) ZERO2(8, 9) ZERO2(10, 11) ZERO2(12, 13) ZERO2(14, 15)
        ZERO2(16, 17) ZERO2(18, 19) ZERO2(20, 21) ZERO2(22, 23) ZERO2(24, 25) ZERO2(26, 27)
        "1:\n\t"
        "vmovdqa64 (%[w]), %%zmm0\n\t"
        "vmovdqa64 64(%[w]), %%zmm1\n\t"
        TOK(0, 4, 5) TOK(1, 6, 7) TOK(2, 8, 9) TOK(3, 10, 11) TOK(4, 12, 13) TOK(5, 14, 15)
        TOK(6, 16, 17) TOK(7, 18, 19) TOK(8, 20, 21) TOK(9, 22, 23) TOK(10, 24, 25)
        TOK(11, 26, 27)
        "add $128, %[w]\n\t"
        "add $48, %[xs]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        STORE2(0, 4, 5) STORE2(1, 6, 7) STORE2(2, 8, 9) STORE2(3, 10, 11) STORE2(4, 12, 13)
        STORE2(5, 14, 15) STORE2(6, 16, 17) STORE2(7, 18, 19) STORE2(8, 20, 21)
        STORE2(9, 22, 23) STORE2(10, 24, 25) STORE2(11, 26, 27)
        : [w] "+r"(w), [xs] "+r"(xs), [n] "+r"(steps)
        : [acc] "r"(acc)
        : TILE_CLOBBERS);
}

static void gemm_tile_4(const uint8_t *w, const int8_t *xs, size_t steps, int32_t *acc) {
    __asm__ volatile(
        ZERO2(4, 5) ZERO2(6, 7) ZERO2(8, 9) ZERO2(10, 11)
        "1:\n\t"
        "vmovdqa64 (%[w]), %%zmm0\n\t"
        "vmovdqa64 64(%[w]), %%zmm1\n\t"
        TOK(0, 4, 5) TOK(1, 6, 7) TOK(2, 8, 9) TOK(3, 10, 11)
        "add $128, %[w]\n\t"
        "add $16, %[xs]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        STORE2(0, 4, 5) STORE2(1, 6, 7) STORE2(2, 8, 9) STORE2(3, 10, 11)
        : [w] "+r"(w), [xs] "+r"(xs), [n] "+r"(steps)
        : [acc] "r"(acc)
        : TILE_CLOBBERS);
}

/* rows [r, r + nrows) of a packed matrix (rows rb bytes apart), columns
 * [c0, c0 + ncols) -> buf in the tile layout (unpack_rows above) */
typedef void (*unpack_fn)(const uint8_t *w, size_t rb, int r, int nrows, int c0, int ncols,
                          uint8_t *buf);

/* Y[t][r] = codes . X[t] - sum(X[t]) for any packed layout: `unpack` turns a
 * GEMM_ROWS x kc chunk into codes once, then every token tile reuses it.
 * kpad: padded columns (X rows are kpad apart); kc: chunk columns, a multiple
 * of the layout's block width, at most GEMM_KC_COLS. Returns 0, or -1 when
 * the packed activations cannot be allocated (nothing written). */
static int gemm_chunked(const uint8_t *w, size_t rb, int kpad, int kc, unpack_fn unpack,
                        const int8_t *X, int n, int32_t *Y, int ldy, int r0, int r1) {
    const size_t ldx = (size_t)kpad;
    const int n_pad = (n + GEMM_TOKENS_TAIL - 1) / GEMM_TOKENS_TAIL * GEMM_TOKENS_TAIL;
    if (kc > kpad) kc = kpad;
    const size_t xs_bytes = ((size_t)n_pad * kc + 63) / 64 * 64;
    const size_t sx_bytes = ((size_t)n * sizeof(int32_t) + 63) / 64 * 64;
    uint8_t *mem = aligned_alloc(64, xs_bytes + sx_bytes);
    if (!mem) return -1;
    int8_t *xs = (int8_t *)mem;
    int32_t *sx = (int32_t *)(mem + xs_bytes);
    for (int t = 0; t < n; t++) sx[t] = sum_i8(X + (size_t)t * ldx, ldx);
    _Alignas(64) uint8_t wbuf[GEMM_ROWS * GEMM_KC_COLS];
    _Alignas(64) int32_t acc[GEMM_TOKENS * GEMM_ROWS];
    for (int c0 = 0; c0 < kpad; c0 += kc) {
        const int ncols = kpad - c0 < kc ? kpad - c0 : kc;
        const int first = c0 == 0;
        pack_x(X, ldx, n, n_pad, c0, ncols, xs);
        for (int r = r0; r < r1; r += GEMM_ROWS) {
            const int nr = r1 - r < GEMM_ROWS ? r1 - r : GEMM_ROWS;
            unpack(w, rb, r, nr, c0, ncols, wbuf);
            for (int t0 = 0; t0 < n;) {
                const int tw = tile_width(t0, n_pad);
                if (tw == GEMM_TOKENS)
                    gemm_tile_12(wbuf, xs + (size_t)t0 * ncols, (size_t)ncols / 4, acc);
                else
                    gemm_tile_4(wbuf, xs + (size_t)t0 * ncols, (size_t)ncols / 4, acc);
                const int nt = n - t0 < tw ? n - t0 : tw;
                for (int t = 0; t < nt; t++) {
                    int32_t *y = Y + (size_t)(t0 + t) * ldy + r;
                    const __m512i bias = _mm512_set1_epi32(-sx[t0 + t]);
                    for (int h = 0; h * 16 < nr; h++) {
                        const __mmask16 m = tail_mask(nr - h * 16);
                        const __m512i prev = first ? bias : _mm512_maskz_loadu_epi32(m, y + h * 16);
                        __m512i v = _mm512_load_si512((const void *)(acc + (t * 2 + h) * 16));
                        v = _mm512_add_epi32(v, prev);
                        _mm512_mask_storeu_epi32(y + h * 16, m, v);
                    }
                }
                t0 += tw;
            }
        }
    }
    free(mem);
    return 0;
}

static void avx512_ternary_gemm(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y,
                                int ldy, int r0, int r1) {
    const size_t ldx = (size_t)nb * BV_QK, rb = (size_t)nb * BV_BLOCK_BYTES;
    if (n >= GEMM_MIN_TOKENS &&
        gemm_chunked(w, rb, nb * BV_QK, GEMM_KC_BLOCKS * BV_QK, unpack_rows, X, n, Y, ldy, r0, r1) == 0)
        return;
    /* Few tokens (or no memory for the packed activations): stream the packed
     * rows once per token instead; same exact results. */
    for (int t = 0; t < n; t++) avx512_ternary_gemv(w, nb, X + (size_t)t * ldx, Y + (size_t)t * ldy, r0, r1);
}

/* ---- T1 GEMM (prefill) ------------------------------------------------------
 * The same tiles as the 2-bit GEMM: T1 rows are unpacked into the same code
 * buffer (codes in column order: digit d of byte j is column 64 d + j of its
 * block), so prefill runs the same inner loop whatever the layout. */
static void unpack_rows_t1(const uint8_t *w, size_t rb, int r, int nrows, int c0, int ncols,
                           uint8_t *buf) {
    const __m512i k30 = _mm512_set1_epi16(3), k03 = _mm512_set1_epi16(3 << 8);
    const __m512i hi = _mm512_set1_epi16((short)0xFF00);
    const int kb0 = c0 / BV_T1_QK, nkb = ncols / BV_T1_QK;
    for (int half = 0; half < GEMM_ROWS / 16; half++) {
        for (int k = 0; k < nkb; k++) {
            __m512i pe[16], po[16], codes[16], out[16];
            for (int i = 0; i < 16; i++) {
                const int row = half * 16 + i;
                if (row >= nrows) {
                    pe[i] = po[i] = _mm512_setzero_si512(); /* y = 0: every code 0 */
                    continue;
                }
                const __m512i q = _mm512_loadu_si512(
                    (const void *)(w + (size_t)(r + row) * rb + (size_t)(kb0 + k) * BV_T1_BLOCK_BYTES));
                pe[i] = _mm512_maddubs_epi16(q, k30);
                po[i] = _mm512_maddubs_epi16(q, k03);
            }
            for (int d = 0; d < 5; d++) {
                for (int i = 0; i < 16; i++) {
                    /* even bytes' codes from pe's high bytes, odd bytes' from po's */
                    codes[i] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(pe[i], 8), po[i], hi, 0xF8);
                    if (d < 4) {
                        pe[i] = _mm512_maddubs_epi16(pe[i], k30);
                        po[i] = _mm512_maddubs_epi16(po[i], k30);
                    }
                }
                transpose16(codes, out);
                const size_t step0 = (size_t)k * (BV_T1_QK / 4) + (size_t)d * 16;
                uint8_t *dst = buf + (step0 * (GEMM_ROWS / 16) + half) * 64;
                for (int j = 0; j < 16; j++)
                    _mm512_store_si512((void *)(dst + (size_t)j * GEMM_ROWS * 4), out[j]);
            }
        }
    }
}

/* ---- T1 products of a few tokens (concurrent sessions' decode steps) ------
 * A batch of 2..T1_BATCH_MAX tokens streams each row once and unpacks each
 * 64-byte block once for all of them: the digit chain above leaves, per
 * digit, the even bytes' codes in pe's high bytes and the odd bytes' in po's,
 * and one ternary-logic op merges them into 64 whole codes (0..2) of 64
 * consecutive columns (x86_amx.c row_codes_t1 does the same into memory).
 * Those take plain activations: per block and row 10 vpmaddubsw + 5 merges
 * (+ 5 shifts), then 5 vpdpbusd per token, where a GEMV per token pays
 * 10 vpmaddubsw + 10 vpdpbusd (half of whose byte lanes are zero). So the
 * tokens after the first cost half a GEMV each in compute, and nothing in
 * memory traffic: forward.c's batch_gemv (a GEMV per token over L2-sized
 * blocks) only saved the traffic. Measured on an Intel Xeon VM (2 GHz,
 * AVX-512 + AMX), 2B shapes, 4 sessions: see bv_kernels_avx512.t1_batch_max.
 * Exact: codes * x summed in int32, minus sum(x) as every T1 kernel does. */
#define T1_BATCH_MAX 8

/* Y[t][r + i] for i < R rows and the N tokens; R * N accumulators (<= 16) */
BV_ALWAYS_INLINE void t1_batch_rows(const uint8_t *w, size_t rb, int nb1, const int8_t *X, size_t ldx, int N, int R,
                                    const int32_t *sx, int32_t *Y, int ldy, int r, stream_ahead ahead) {
    const __m512i k30 = _mm512_set1_epi16(3), k03 = _mm512_set1_epi16(3 << 8);
    const __m512i hi = _mm512_set1_epi16((short)0xFF00);
    __m512i acc[4][T1_BATCH_MAX];
    for (int i = 0; i < R; i++)
        for (int t = 0; t < N; t++) acc[i][t] = _mm512_setzero_si512();
    for (int b = 0; b < nb1; b++) {
        __m512i pe[4], po[4];
        for (int i = 0; i < R; i++) {
            const uint8_t *p = w + (size_t)(r + i) * rb + (size_t)b * BV_T1_BLOCK_BYTES;
            prefetch_l1(p + ahead.near);
            prefetch_l2(p + ahead.far);
            const __m512i q = _mm512_loadu_si512((const void *)p);
            pe[i] = _mm512_maddubs_epi16(q, k30);
            po[i] = _mm512_maddubs_epi16(q, k03);
        }
        const int8_t *xb = X + (size_t)b * BV_T1_QK;
        for (int d = 0; d < 5; d++) {
            __m512i codes[4];
            for (int i = 0; i < R; i++)
                codes[i] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(pe[i], 8), po[i], hi, 0xF8);
            for (int t = 0; t < N; t++) {
                const __m512i xv = _mm512_loadu_si512((const void *)(xb + (size_t)t * ldx + 64 * d));
                for (int i = 0; i < R; i++) acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], codes[i], xv);
            }
            if (d < 4)
                for (int i = 0; i < R; i++) {
                    pe[i] = _mm512_maddubs_epi16(pe[i], k30);
                    po[i] = _mm512_maddubs_epi16(po[i], k30);
                }
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < N; t++) Y[(size_t)t * ldy + r + i] = _mm512_reduce_add_epi32(acc[i][t]) - sx[t];
}

/* rows [r0, r1) of N tokens: R rows at a time (R * N <= 16 accumulators), then one */
BV_ALWAYS_INLINE void t1_batch_n(const uint8_t *w, size_t rb, int nb1, const int8_t *X, size_t ldx, int N,
                                 const int32_t *sx, int32_t *Y, int ldy, int r0, int r1) {
    const int R = N <= 4 ? 4 : 2;
    const stream_ahead ahead = stream_distances((size_t)R * rb);
    stream_start(w + (size_t)r0 * rb, (size_t)(r1 - r0) * rb, ahead);
    int r = r0;
    for (; r + R <= r1; r += R) t1_batch_rows(w, rb, nb1, X, ldx, N, R, sx, Y, ldy, r, ahead);
    for (; r < r1; r++) t1_batch_rows(w, rb, nb1, X, ldx, N, 1, sx, Y, ldy, r, ahead);
}

static void t1_batch(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy, int r0, int r1) {
    const size_t ldx = (size_t)nb1 * BV_T1_QK, rb = (size_t)nb1 * BV_T1_BLOCK_BYTES;
    int32_t sx[T1_BATCH_MAX];
    for (int t = 0; t < n; t++) sx[t] = sum_i8(X + (size_t)t * ldx, ldx);
    switch (n) { /* each token count its own unrolled copy */
    case 2: t1_batch_n(w, rb, nb1, X, ldx, 2, sx, Y, ldy, r0, r1); break;
    case 3: t1_batch_n(w, rb, nb1, X, ldx, 3, sx, Y, ldy, r0, r1); break;
    case 4: t1_batch_n(w, rb, nb1, X, ldx, 4, sx, Y, ldy, r0, r1); break;
    case 5: t1_batch_n(w, rb, nb1, X, ldx, 5, sx, Y, ldy, r0, r1); break;
    case 6: t1_batch_n(w, rb, nb1, X, ldx, 6, sx, Y, ldy, r0, r1); break;
    case 7: t1_batch_n(w, rb, nb1, X, ldx, 7, sx, Y, ldy, r0, r1); break;
    default: t1_batch_n(w, rb, nb1, X, ldx, 8, sx, Y, ldy, r0, r1); break;
    }
}

void bv_avx512_t1_gemm(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy,
                       int r0, int r1) {
    const size_t ldx = (size_t)nb1 * BV_T1_QK, rb = (size_t)nb1 * BV_T1_BLOCK_BYTES;
    if (n >= 2 && n <= T1_BATCH_MAX) {
        t1_batch(w, nb1, X, n, Y, ldy, r0, r1);
        return;
    }
    if (n >= GEMM_MIN_TOKENS && gemm_chunked(w, rb, nb1 * BV_T1_QK, GEMM_KC_T1_BLOCKS * BV_T1_QK, unpack_rows_t1,
                                             X, n, Y, ldy, r0, r1) == 0)
        return;
    for (int t = 0; t < n; t++) bv_avx512_t1_gemv(w, nb1, X + (size_t)t * ldx, Y + (size_t)t * ldy, r0, r1);
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
    const stream_ahead ahead = stream_distances(GEMV_ROWS * cols);
    stream_start(q + (size_t)r0 * cols, (size_t)(r1 - r0) * cols, ahead);
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
                stream_prefetch(p, ahead);
                const __m512i qv = _mm512_loadu_si512((const void *)p);
                a[i] = _mm512_dpbusd_epi32(a[i], u, qv);
                s[i] = _mm512_dpbusd_epi32(s[i], ones, qv);
            }
        }
        __m512i v[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++)
            v[i] = _mm512_sub_epi32(a[i], _mm512_slli_epi32(s[i], 7));
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

/* The int8 head for 2..T1_BATCH_MAX tokens: each 64-byte piece of a row is
 * loaded once for all of them, and its sum-of-q term (the second vpdpbusd
 * above) is taken once, not once per token: per piece 1 + n vpdpbusd where
 * n GEMVs pay 2n, and the head (328 MB on the 2B shapes) streams once. */
BV_ALWAYS_INLINE void int8_few_rows(const int8_t *q, size_t cols, const int8_t *X, int N, int R, int32_t *Y,
                                    int ldy, int r, stream_ahead ahead) {
    const __m512i bias = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    __m512i acc[4][T1_BATCH_MAX], s[4];
    for (int i = 0; i < R; i++) {
        s[i] = _mm512_setzero_si512();
        for (int t = 0; t < N; t++) acc[i][t] = _mm512_setzero_si512();
    }
    for (size_t k = 0; k < cols; k += 64) {
        __m512i qv[4];
        for (int i = 0; i < R; i++) {
            const int8_t *p = q + (size_t)(r + i) * cols + k;
            stream_prefetch(p, ahead);
            qv[i] = _mm512_loadu_si512((const void *)p);
            s[i] = _mm512_dpbusd_epi32(s[i], ones, qv[i]);
        }
        for (int t = 0; t < N; t++) {
            const __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)(X + (size_t)t * cols + k)), bias);
            for (int i = 0; i < R; i++) acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], u, qv[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        const __m512i bias_sum = _mm512_slli_epi32(s[i], 7);
        for (int t = 0; t < N; t++)
            Y[(size_t)t * ldy + r + i] = _mm512_reduce_add_epi32(_mm512_sub_epi32(acc[i][t], bias_sum));
    }
}

BV_ALWAYS_INLINE void int8_few_n(const int8_t *q, size_t cols, const int8_t *X, int N, int32_t *Y, int ldy, int r0,
                                 int r1) {
    const int R = N <= 4 ? 4 : 2;
    const stream_ahead ahead = stream_distances((size_t)R * cols);
    stream_start(q + (size_t)r0 * cols, (size_t)(r1 - r0) * cols, ahead);
    int r = r0;
    for (; r + R <= r1; r += R) int8_few_rows(q, cols, X, N, R, Y, ldy, r, ahead);
    for (; r < r1; r++) int8_few_rows(q, cols, X, N, 1, Y, ldy, r, ahead);
}

static void avx512_int8_gemm(const int8_t *q, int nb, const int8_t *X, int n, int32_t *Y, int ldy, int r0, int r1) {
    const size_t cols = (size_t)nb * BV_QK;
    for (int t0 = 0; t0 < n; t0 += T1_BATCH_MAX) { /* more tokens than a batch: batches of them */
        const int m = n - t0 < T1_BATCH_MAX ? n - t0 : T1_BATCH_MAX;
        const int8_t *Xt = X + (size_t)t0 * cols;
        int32_t *Yt = Y + (size_t)t0 * ldy;
        switch (m) { /* each token count its own unrolled copy */
        case 1: avx512_int8_gemv(q, nb, Xt, Yt, r0, r1); break;
        case 2: int8_few_n(q, cols, Xt, 2, Yt, ldy, r0, r1); break;
        case 3: int8_few_n(q, cols, Xt, 3, Yt, ldy, r0, r1); break;
        case 4: int8_few_n(q, cols, Xt, 4, Yt, ldy, r0, r1); break;
        case 5: int8_few_n(q, cols, Xt, 5, Yt, ldy, r0, r1); break;
        case 6: int8_few_n(q, cols, Xt, 6, Yt, ldy, r0, r1); break;
        case 7: int8_few_n(q, cols, Xt, 7, Yt, ldy, r0, r1); break;
        default: int8_few_n(q, cols, Xt, 8, Yt, ldy, r0, r1); break;
        }
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
    const stream_ahead ahead = stream_distances(GEMV_ROWS * rb);
    stream_start(q + (size_t)r0 * rb, (size_t)(r1 - r0) * rb, ahead);
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
                stream_prefetch(p, ahead);
                const __m512i qv = _mm512_loadu_si512((const void *)p);
                a[i] = _mm512_dpbusd_epi32(a[i], _mm512_and_si512(qv, lo4), x0);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qv, 4), lo4);
                a[i] = _mm512_dpbusd_epi32(a[i], hi, x1);
            }
        }
        const __m256i s = _mm256_sub_epi32(reduce8(a), _mm256_set1_epi32(sx8));
        _mm256_storeu_si256((__m256i *)(y + r), s);
    }
    for (; r < r1; r++) {
        const uint8_t *qr = q + (size_t)r * rb;
        __m512i a = _mm512_setzero_si512();
        for (int g = 0; g < nb; g++) {
            const __m512i qv =
                _mm512_loadu_si512((const void *)(qr + (size_t)g * BV_I4_GROUP_BYTES));
            a = _mm512_dpbusd_epi32(a, _mm512_and_si512(qv, lo4),
                                    _mm512_loadu_si512((const void *)(x + (size_t)g * BV_QK)));
            a = _mm512_dpbusd_epi32(a, _mm512_and_si512(_mm512_srli_epi16(qv, 4), lo4),
                                    _mm512_loadu_si512((const void *)(x + (size_t)g * BV_QK + 64)));
        }
        y[r] = _mm512_reduce_add_epi32(a) - sx8;
    }
}

/* ---- float helpers (f16 LM head, attention, KV cache conversions) ---------
 * Not bit-exact with ref.c: sums run in a different order (within the
 * tolerance the model tests name). The f16 <-> f32 conversions are exact:
 * vcvtph2ps / vcvtps2ph with round-to-nearest-even give the bits of ref.c's
 * bit-manipulating converters for every non-NaN value. */
static void avx512_f16_to_f32(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

static void avx512_f32_to_f16(const float *src, uint16_t *dst, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(dst + i, m, h);
    }
}

/* y[r] = sum_k W[r][k] * x[k], W rows of `cols` halves; 4 rows share each
 * x load (the head is 128256 rows: memory-bound, 2 bytes per weight). */
static void avx512_f16_gemv(const uint16_t *w, int cols, const float *x, float *y, int r0,
                            int r1) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint16_t *w0 = w + (size_t)r * cols;
        const uint16_t *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < cols; k += 16) {
            const __mmask16 m = tail_mask(cols - k);
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
            a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w0 + k)), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w1 + k)), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w2 + k)), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w3 + k)), xv, a3);
        }
        y[r] = _mm512_reduce_add_ps(a0);
        y[r + 1] = _mm512_reduce_add_ps(a1);
        y[r + 2] = _mm512_reduce_add_ps(a2);
        y[r + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; r < r1; r++) {
        const uint16_t *wr = w + (size_t)r * cols;
        __m512 a = _mm512_setzero_ps();
        for (int k = 0; k < cols; k += 16) {
            const __mmask16 m = tail_mask(cols - k);
            a = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wr + k)),
                                _mm512_maskz_loadu_ps(m, x + k), a);
        }
        y[r] = _mm512_reduce_add_ps(a);
    }
}

/* ---- attention (see bv_kernels.h attn_span) --------------------------------
 * Positions go in blocks of ATTN_BLOCK (one zmm of scores per head): score
 * the block, update each head's running max / sum (online softmax), then add
 * the block's weighted V rows. Up to ATTN_TILE query heads share every K and
 * V row converted from f16, so a KV head's cache is read once per group
 * rather than once per query head. Score dot products run two positions at a
 * time: 2 x ATTN_TILE independent FMA chains instead of one. */
#define ATTN_BLOCK 16
#define ATTN_TILE 4

/* e^x for the softmax's x <= 0: x = n ln2 + f, |f| <= ln2/2, e^f by its
 * degree-6 Taylor polynomial (relative error < 1e-7), times 2^n by vscalefps.
 * Below -87 the result is ~1e-38: clamped there, it counts as nothing. */
BV_ALWAYS_INLINE __m512 exp_nonpos_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x); /* ln2, high part */
    f = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), f);    /* ln2, low part */
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* s[h][t] = scale * q_h . k_t for the nt <= ATTN_BLOCK positions at kb.
 * Inlined with nh a constant (see attn_block), so the accumulators stay in
 * registers. */
BV_ALWAYS_INLINE void attn_block_scores(const float *q, int nh, const uint16_t *kb, int nt, int left, int hd,
                                         float scale, float s[ATTN_TILE][ATTN_BLOCK]) {
    for (int t = 0; t < nt; t += 2) {
        const int pair = t + 1 < nt;
        __m512 a0[ATTN_TILE], a1[ATTN_TILE];
        for (int h = 0; h < ATTN_TILE; h++) a0[h] = a1[h] = _mm512_setzero_ps();
        prefetch_kv_row(kb, t, left, hd);
        prefetch_kv_row(kb, t + 1, left, hd);
        for (int d = 0; d < hd; d += 16) {
            const __mmask16 dm = tail_mask(hd - d);
            const __m512 k0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(dm, kb + (size_t)t * hd + d));
            const __m512 k1 =
                _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(pair ? dm : 0, kb + (size_t)(t + 1) * hd + d));
#pragma GCC unroll 4
            for (int h = 0; h < ATTN_TILE; h++)
                if (h < nh) {
                    const __m512 qh = _mm512_maskz_loadu_ps(dm, q + (size_t)h * hd + d);
                    a0[h] = _mm512_fmadd_ps(qh, k0, a0[h]);
                    a1[h] = _mm512_fmadd_ps(qh, k1, a1[h]);
                }
        }
        for (int h = 0; h < nh; h++) {
            s[h][t] = _mm512_reduce_add_ps(a0[h]) * scale;
            if (pair) s[h][t + 1] = _mm512_reduce_add_ps(a1[h]) * scale;
        }
    }
}

/* o_h += sum_t p[h][t] v_t over the nt positions at vb, 64 floats of o at a time */
BV_ALWAYS_INLINE void attn_block_values(float p[ATTN_TILE][ATTN_BLOCK], int nh, const uint16_t *vb, int nt, int left,
                                         int hd, float *o) {
    for (int d0 = 0; d0 < hd; d0 += 64) {
        __mmask16 dm[4];
        __m512 acc[ATTN_TILE][4];
        for (int c = 0; c < 4; c++) dm[c] = d0 + 16 * c < hd ? tail_mask(hd - d0 - 16 * c) : 0;
        for (int h = 0; h < ATTN_TILE; h++)
            for (int c = 0; c < 4; c++)
                acc[h][c] = h < nh ? _mm512_maskz_loadu_ps(dm[c], o + (size_t)h * hd + d0 + 16 * c)
                                   : _mm512_setzero_ps();
        for (int t = 0; t < nt; t++) {
            if (d0 == 0) prefetch_kv_row(vb, t, left, hd);
            __m512 vv[4];
            for (int c = 0; c < 4; c++)
                vv[c] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(dm[c], vb + (size_t)t * hd + d0 + 16 * c));
#pragma GCC unroll 4
            for (int h = 0; h < ATTN_TILE; h++)
                if (h < nh) {
                    const __m512 ph = _mm512_set1_ps(p[h][t]);
                    for (int c = 0; c < 4; c++) acc[h][c] = _mm512_fmadd_ps(ph, vv[c], acc[h][c]);
                }
        }
        for (int h = 0; h < nh; h++)
            for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(o + (size_t)h * hd + d0 + 16 * c, dm[c], acc[h][c]);
    }
}

/* One block for nh heads: scores, online-softmax update, weighted values.
 * Always inlined into attn_block_nh below with nh a constant. */
BV_ALWAYS_INLINE void attn_block(const float *qt, int nh, const uint16_t *kb, const uint16_t *vb, int nt,
                                 int left, int hd, float scale, float *mt, float *lt, float *ot) {
    const __mmask16 live = tail_mask(nt);
    _Alignas(64) float s[ATTN_TILE][ATTN_BLOCK];
    attn_block_scores(qt, nh, kb, nt, left, hd, scale, s);
    for (int h = 0; h < nh; h++) {
        const __m512 sh = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live, s[h]);
        const float block_max = _mm512_reduce_max_ps(sh);
        if (block_max > mt[h]) { /* rescale what was summed to the new maximum */
            const float c = expf(mt[h] - block_max);
            lt[h] *= c;
            const __m512 cv = _mm512_set1_ps(c);
            float *oh = ot + (size_t)h * hd;
            for (int d = 0; d < hd; d += 16) {
                const __mmask16 dm = tail_mask(hd - d);
                _mm512_mask_storeu_ps(oh + d, dm, _mm512_mul_ps(cv, _mm512_maskz_loadu_ps(dm, oh + d)));
            }
            mt[h] = block_max;
        }
        const __m512 p = _mm512_maskz_mov_ps(live, exp_nonpos_ps(_mm512_sub_ps(sh, _mm512_set1_ps(mt[h]))));
        lt[h] += _mm512_reduce_add_ps(p);
        _mm512_store_ps(s[h], p);
    }
    attn_block_values(s, nh, vb, nt, left, hd, ot);
}

static void attn_block_nh(const float *qt, int nh, const uint16_t *kb, const uint16_t *vb, int nt, int left,
                          int hd, float scale, float *mt, float *lt, float *ot) {
    switch (nh) {
    case 4: attn_block(qt, 4, kb, vb, nt, left, hd, scale, mt, lt, ot); break;
    case 3: attn_block(qt, 3, kb, vb, nt, left, hd, scale, mt, lt, ot); break;
    case 2: attn_block(qt, 2, kb, vb, nt, left, hd, scale, mt, lt, ot); break;
    default: attn_block(qt, 1, kb, vb, nt, left, hd, scale, mt, lt, ot); break;
    }
}

/* ---- the full tile: 4 heads, hd % 16 == 0 (the 2B shapes' every tile) ------
 * The generic block above reduces each (head, position) dot product with its
 * own _mm512_reduce_add_ps and keeps the scores in a [head][position] array
 * with a scalar max and sum per head: measured on an Intel Xeon (AVX-512,
 * 2 GHz), 65 ns per position of a 4-head tile at hd 128, in L2. The full tile
 * scores four positions at once, 16 accumulators (position t, head h: number
 * 4t + h) folded into one vector by a transpose-and-add tree (45 shuffles
 * and adds instead of 16 reductions of ~8 each), so a quad j of positions
 * 4j..4j+3 is one vector with lanes
 *     [t0 h0, t0 h1, t0 h2, t0 h3, t1 h0, ..., t3 h3]   (128-bit lane = position).
 * The online softmax runs on the block's four quads for all four heads at
 * once: a head's running maximum sits in lane h of every 128-bit lane, its
 * sum in four partial lanes. Either cache format, as in x86_avx2.c: i8 a
 * constant, each format its own inlined copy. */
#define ATTN_QUADS (ATTN_BLOCK / 4)

/* 16 floats of a K/V row at d as floats (int8: the codes, not yet scaled) */
BV_ALWAYS_INLINE __m512 load_kv16(const void *row, int d, int i8) {
    if (i8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)row + d))));
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + d)));
}

BV_ALWAYS_INLINE const void *kv_row512(const void *rows, size_t t, int hd, int i8) {
    return (const char *)rows + t * (size_t)hd * (i8 ? 1 : 2);
}

/* [hsum a, hsum b, hsum c, hsum d] in each 128-bit lane, partial: lane L
 * holds the sums of lane L of the four inputs */
BV_ALWAYS_INLINE __m512 hsum4_lanes(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* lane i: the horizontal sum of v[i] (the four partial vectors' 128-bit lanes added) */
BV_ALWAYS_INLINE __m512 hsum16x16(__m512 u0, __m512 u1, __m512 u2, __m512 u3) {
    const __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u2, u3, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(u2, u3, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(w0, w1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* each head's maximum over the four 128-bit lanes, in every lane */
BV_ALWAYS_INLINE __m512 quad_max(__m512 x) {
    x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* the lanes of quad j that hold one of the block's nt positions */
BV_ALWAYS_INLINE __mmask16 quad_lanes_valid(int j, int nt) {
    const int v = nt - 4 * j;
    return v >= 4 ? (__mmask16)0xFFFF : v <= 0 ? (__mmask16)0 : (__mmask16)((1u << (4 * v)) - 1);
}

/* per-position factors (ks or vs, times `times`) in the quad layout; positions past nt: 0 */
BV_ALWAYS_INLINE __m512 quad_steps(const float *steps, int j, int nt, float times) {
    const int v = nt - 4 * j;
    const __m128 s4 = _mm_maskz_loadu_ps((__mmask8)(v >= 4 ? 0xF : (1u << v) - 1), steps + 4 * j);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_mul_ps(_mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s4)), _mm512_set1_ps(times));
}

/* r[j] = scale * q_h . k_t (int8: times the row's step) in the quad layout;
 * lanes past nt are -inf. Rows past nt read row 0 of the block (no lane keeps them). */
BV_ALWAYS_INLINE void attn_tile_scores(const float *q, const void *kb, const float *ks, int nt, int left, int hd,
                                       float scale, __m512 r[ATTN_QUADS], int i8) {
    const float *q0 = q, *q1 = q + hd, *q2 = q + 2 * (size_t)hd, *q3 = q + 3 * (size_t)hd;
    for (int j = 0; j < ATTN_QUADS; j++) {
        const int t = 4 * j;
        if (t >= nt) {
            r[j] = _mm512_set1_ps(-INFINITY);
            continue;
        }
        const void *k0p = kv_row512(kb, (size_t)t, hd, i8);
        const void *k1p = t + 1 < nt ? kv_row512(kb, (size_t)t + 1, hd, i8) : k0p;
        const void *k2p = t + 2 < nt ? kv_row512(kb, (size_t)t + 2, hd, i8) : k0p;
        const void *k3p = t + 3 < nt ? kv_row512(kb, (size_t)t + 3, hd, i8) : k0p;
        __m512 a[16];
        for (int i = 0; i < 16; i++) a[i] = _mm512_setzero_ps();
        for (int i = 0; i < 4; i++) prefetch_kv_bytes(kb, t + i, left, hd * (i8 ? 1 : 2));
        for (int d = 0; d < hd; d += 16) {
            const __m512 k0 = load_kv16(k0p, d, i8), k1 = load_kv16(k1p, d, i8);
            const __m512 k2 = load_kv16(k2p, d, i8), k3 = load_kv16(k3p, d, i8);
            const __m512 qh0 = _mm512_loadu_ps(q0 + d), qh1 = _mm512_loadu_ps(q1 + d);
            const __m512 qh2 = _mm512_loadu_ps(q2 + d), qh3 = _mm512_loadu_ps(q3 + d);
            a[0] = _mm512_fmadd_ps(qh0, k0, a[0]);
            a[1] = _mm512_fmadd_ps(qh1, k0, a[1]);
            a[2] = _mm512_fmadd_ps(qh2, k0, a[2]);
            a[3] = _mm512_fmadd_ps(qh3, k0, a[3]);
            a[4] = _mm512_fmadd_ps(qh0, k1, a[4]);
            a[5] = _mm512_fmadd_ps(qh1, k1, a[5]);
            a[6] = _mm512_fmadd_ps(qh2, k1, a[6]);
            a[7] = _mm512_fmadd_ps(qh3, k1, a[7]);
            a[8] = _mm512_fmadd_ps(qh0, k2, a[8]);
            a[9] = _mm512_fmadd_ps(qh1, k2, a[9]);
            a[10] = _mm512_fmadd_ps(qh2, k2, a[10]);
            a[11] = _mm512_fmadd_ps(qh3, k2, a[11]);
            a[12] = _mm512_fmadd_ps(qh0, k3, a[12]);
            a[13] = _mm512_fmadd_ps(qh1, k3, a[13]);
            a[14] = _mm512_fmadd_ps(qh2, k3, a[14]);
            a[15] = _mm512_fmadd_ps(qh3, k3, a[15]);
        }
        const __m512 sums = hsum16x16(hsum4_lanes(a[0], a[1], a[2], a[3]), hsum4_lanes(a[4], a[5], a[6], a[7]),
                                      hsum4_lanes(a[8], a[9], a[10], a[11]),
                                      hsum4_lanes(a[12], a[13], a[14], a[15]));
        const __m512 sc = i8 ? quad_steps(ks, j, nt, scale) : _mm512_set1_ps(scale);
        r[j] = _mm512_mask_mul_ps(_mm512_set1_ps(-INFINITY), quad_lanes_valid(j, nt), sums, sc);
    }
}

/* The online softmax step of one block for the four heads: r becomes
 * e^(s - m) (0 past nt), the running maximum mv (lane h of each 128-bit lane)
 * and sum lv (four partials per head) are updated, and o's rows are rescaled
 * for the heads whose maximum grew. */
BV_ALWAYS_INLINE void attn_tile_softmax(__m512 r[ATTN_QUADS], int nt, __m512 *mv, __m512 *lv, float *o, int hd) {
    const __m512 block_max = quad_max(_mm512_max_ps(_mm512_max_ps(r[0], r[1]), _mm512_max_ps(r[2], r[3])));
    const __m512 m_new = _mm512_max_ps(*mv, block_max);
    const int grew = (int)_mm512_cmp_ps_mask(m_new, *mv, _CMP_GT_OQ) & 0xF;
    if (grew) { /* rescale what was summed to the new maximum (the first block: 0 * e^-87) */
        const __m512 c = exp_nonpos_ps(_mm512_sub_ps(*mv, m_new));
        *lv = _mm512_mul_ps(*lv, c);
        _Alignas(64) float cs[16];
        _mm512_store_ps(cs, c);
        for (int h = 0; h < ATTN_TILE; h++) {
            if (!((grew >> h) & 1)) continue;
            const __m512 ch = _mm512_set1_ps(cs[h]);
            float *oh = o + (size_t)h * hd;
            for (int d = 0; d < hd; d += 16) _mm512_storeu_ps(oh + d, _mm512_mul_ps(_mm512_loadu_ps(oh + d), ch));
        }
        *mv = m_new;
    }
    for (int j = 0; j < ATTN_QUADS; j++) /* exp(-87) is not 0: lanes past nt are cleared */
        r[j] = _mm512_maskz_mov_ps(quad_lanes_valid(j, nt), exp_nonpos_ps(_mm512_sub_ps(r[j], *mv)));
    *lv = _mm512_add_ps(*lv, _mm512_add_ps(_mm512_add_ps(r[0], r[1]), _mm512_add_ps(r[2], r[3])));
}

/* o_h += sum_t pw(h, t) v_t for a full tile, 64 floats of o at a time in 16
 * accumulators. pw: the weights of the rows as stored (int8: already
 * times each row's step), in the quad layout: head h, position t at
 * pw[4t + h] */
BV_ALWAYS_INLINE void attn_tile_values(const float pw[ATTN_BLOCK * ATTN_TILE], const void *vb, int nt, int left,
                                       int hd, float *o, int i8) {
    for (int d0 = 0; d0 < hd; d0 += 64) {
        /* hd % 16 == 0: the last pass may have 1-4 chunks; masks keep it in the row */
        __mmask16 dm[4];
        for (int c = 0; c < 4; c++) dm[c] = d0 + 16 * c < hd ? 0xFFFF : 0;
        /* constant bounds, fully unrolled: the 16 accumulators stay in registers */
        __m512 acc[ATTN_TILE][4];
#pragma GCC unroll 4
        for (int h = 0; h < ATTN_TILE; h++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[h][c] = _mm512_maskz_loadu_ps(dm[c], o + (size_t)h * hd + d0 + 16 * c);
        for (int t = 0; t < nt; t++) {
            if (d0 == 0) prefetch_kv_bytes(vb, t, left, hd * (i8 ? 1 : 2));
            const void *vt = kv_row512(vb, (size_t)t, hd, i8);
            __m512 vv[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) vv[c] = dm[c] ? load_kv16(vt, d0 + 16 * c, i8) : _mm512_setzero_ps();
#pragma GCC unroll 4
            for (int h = 0; h < ATTN_TILE; h++) {
                const __m512 ph = _mm512_set1_ps(pw[4 * t + h]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) acc[h][c] = _mm512_fmadd_ps(ph, vv[c], acc[h][c]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < ATTN_TILE; h++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(o + (size_t)h * hd + d0 + 16 * c, dm[c], acc[h][c]);
    }
}

/* A full tile over the span, either cache format. first: this is the span's
 * first pass over its rows (prefetch them; later tiles find them in cache). */
BV_ALWAYS_INLINE void attn_span_full_tile(const float *qt, int first, const void *k, const float *ks, const void *v,
                                          const float *vs, int n, int hd, float scale, float *m, float *l, float *ot,
                                          int i8) {
    __m512 mv = _mm512_set1_ps(-INFINITY), lv = _mm512_setzero_ps();
    memset(ot, 0, sizeof(float) * ATTN_TILE * (size_t)hd);
    for (int t0 = 0; t0 < n; t0 += ATTN_BLOCK) {
        const int nt = n - t0 < ATTN_BLOCK ? n - t0 : ATTN_BLOCK;
        const int left = first ? n - t0 : 0;
        const void *kb = kv_row512(k, (size_t)t0, hd, i8), *vb = kv_row512(v, (size_t)t0, hd, i8);
        __m512 r[ATTN_QUADS];
        attn_tile_scores(qt, kb, i8 ? ks + t0 : NULL, nt, left, hd, scale, r, i8);
        attn_tile_softmax(r, nt, &mv, &lv, ot, hd);
        _Alignas(64) float pw[ATTN_BLOCK * ATTN_TILE];
        for (int j = 0; j < ATTN_QUADS; j++) {
            /* the value rows' steps go into the weights, once per position */
            if (i8 && 4 * j < nt) r[j] = _mm512_mul_ps(r[j], quad_steps(vs + t0, j, nt, 1.0f));
            _mm512_store_ps(pw + 16 * j, r[j]);
        }
        attn_tile_values(pw, vb, nt, left, hd, ot, i8);
    }
    /* lane h of every 128-bit lane: head h's maximum; its sum in four partials */
    const __m512 lsum = _mm512_add_ps(lv, _mm512_shuffle_f32x4(lv, lv, _MM_SHUFFLE(1, 0, 3, 2)));
    _Alignas(64) float ms[16], ls[16];
    _mm512_store_ps(ms, mv);
    _mm512_store_ps(ls, _mm512_add_ps(lsum, _mm512_shuffle_f32x4(lsum, lsum, _MM_SHUFFLE(2, 3, 0, 1))));
    for (int h = 0; h < ATTN_TILE; h++) {
        m[h] = ms[h];
        l[h] = ls[h];
    }
}

static void avx512_attn_span(const float *q, int group, const uint16_t *k, const uint16_t *v, int n, int hd,
                             float scale, float *m, float *l, float *o) {
    for (int g0 = 0; g0 < group; g0 += ATTN_TILE) {
        const int nh = group - g0 < ATTN_TILE ? group - g0 : ATTN_TILE;
        const float *qt = q + (size_t)g0 * hd;
        float *ot = o + (size_t)g0 * hd;
        /* the path depends on the shapes only, so a model computes the same
         * bits for any thread count and chunking */
        if (nh == ATTN_TILE && hd % 16 == 0) {
            attn_span_full_tile(qt, g0 == 0, k, NULL, v, NULL, n, hd, scale, m + g0, l + g0, ot, 0);
            continue;
        }
        float mt[ATTN_TILE], lt[ATTN_TILE];
        for (int h = 0; h < nh; h++) {
            mt[h] = -INFINITY;
            lt[h] = 0.0f;
        }
        memset(ot, 0, sizeof(float) * (size_t)nh * hd);
        for (int t0 = 0; t0 < n; t0 += ATTN_BLOCK) {
            const int nt = n - t0 < ATTN_BLOCK ? n - t0 : ATTN_BLOCK;
            /* the first pass over the span's rows prefetches them; later passes
             * (groups of more than ATTN_TILE heads) find them in cache */
            attn_block_nh(qt, nh, k + (size_t)t0 * hd, v + (size_t)t0 * hd, nt, g0 == 0 ? n - t0 : 0, hd, scale, mt,
                          lt, ot);
        }
        for (int h = 0; h < nh; h++) {
            m[g0 + h] = mt[h];
            l[g0 + h] = lt[h];
        }
    }
}

/* The int8 cache: a full tile runs the quad kernel above on the codes; other
 * tiles (groups of 1-3 heads, or hd % 16 != 0) the AVX2 kernel, whose generic
 * block serves them as well as a 16-lane one would (one tile of nh heads) */
static void avx512_attn_span_i8(const float *q, int group, const int8_t *k8, const float *ks, const int8_t *v8,
                                const float *vs, int n, int hd, float scale, float *m, float *l, float *o) {
    for (int g0 = 0; g0 < group; g0 += ATTN_TILE) {
        const int nh = group - g0 < ATTN_TILE ? group - g0 : ATTN_TILE;
        const float *qt = q + (size_t)g0 * hd;
        float *ot = o + (size_t)g0 * hd;
        if (nh == ATTN_TILE && hd % 16 == 0)
            attn_span_full_tile(qt, g0 == 0, k8, ks, v8, vs, n, hd, scale, m + g0, l + g0, ot, 1);
        else
            bv_avx2_attn_span_i8(qt, nh, k8, ks, v8, vs, n, hd, scale, m + g0, l + g0, ot);
    }
}

/* The AMX path (kernels/x86_amx.c) is this table with its prefill GEMMs on
 * tiles: dispatch.c fills the entries it leaves NULL from this one. */
/* The quantized-LoRA rows: the reference's C source, vectorized by this
 * file's flags; the same bits as ref (kernels/lora_rows.h). */
#define BV_LORA_PREFIX avx512_
#include "lora_rows.h"

const bv_kernels bv_kernels_avx512 = {
    .name = "avx512",
    .ternary_gemv = avx512_ternary_gemv,
    .ternary_gemm = avx512_ternary_gemm,
    .int8_gemv = avx512_int8_gemv,
    .int8_gemm = avx512_int8_gemm,
    .int8_batch_max = T1_BATCH_MAX,
    .int4_gemv = avx512_int4_gemv,
    .t1_gemv = bv_avx512_t1_gemv,
    .t1_gemm = bv_avx512_t1_gemm,
    .prefer_t1 = 1, /* measured: ~12% faster decode at 2 threads on the 2B shapes, prefill equal */
    .batch_gemv_max = GEMM_MIN_TOKENS - 1, /* where the GEMM itself falls back to GEMVs (2-bit layout) */
    .t1_batch_max = T1_BATCH_MAX,
    .f16_gemv = avx512_f16_gemv,
    .attn_span = avx512_attn_span,
    .attn_span_i8 = avx512_attn_span_i8,
    .f16_to_f32 = avx512_f16_to_f32,
    .f32_to_f16 = avx512_f32_to_f16,
    .lora_i8_gemv = avx512_lora_i8_gemv,
    .lora_i4_gemv = avx512_lora_i4_gemv,
};

#endif /* x86-64 */
