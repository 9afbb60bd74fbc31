/* x86_avx2.c - AVX2 kernels. Compiled alone with -mavx2 -mfma -mf16c
 * (setup.py); dispatch.c only selects this table when cpuid and XGETBV say
 * the CPU and the OS support it. Every result is exact and equal to
 * kernels/ref.c bit for bit.
 *
 * AVX2 has no u8 x s8 -> int32 dot product; vpmaddubsw (u8 x s8, pairs added
 * into int16 with saturation) is the workhorse. Saturation never happens here
 * because the unsigned operand is always small: a ternary code c = w + 1 is
 * 0..2 (|pair| <= 2*2*128 = 512 even for x = -128), an int4 code is 0..15
 * (|pair| <= 3840). Where int16 sums are carried across blocks, each comment
 * gives the bound that keeps them inside [-32768, 32767]. As on AVX-512:
 *     sum_k w[k] * x[k] = sum_k c[k] * x[k] - sum_k x[k].
 * int8 x int8 has no small operand, so it widens to int16 and uses vpmaddwd.
 */
#if defined(__x86_64__) || defined(_M_X64)

#if !defined(__AVX2__)
#error "x86_avx2.c must be compiled with -mavx2"
#endif

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "bv_kernels.h"
#include "x86_prefetch.h"

#define BV_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Tile sizes, in one place. GEMV_ROWS rows per iteration share activation
 * loads from L1. GEMM: GEMM_ROWS x GEMM_TOKENS int16 accumulators, the three
 * tokens' activations and one row of codes in registers (14 of the 16 ymm; see
 * gemm_tile for why not 4 x 3). A K chunk is GEMM_KC_BLOCKS blocks = 2048
 * columns: the unpacked codes of the rows (6 KB) stay in L1, and 64 steps of
 * 32 columns is exactly what an int16 accumulator holds (64 * 512 = 32768,
 * see gemm_tile). */
#define GEMV_ROWS 4
#define GEMV_FLUSH_BLOCKS 8
#define GEMM_ROWS 3
#define GEMM_TOKENS 3
#define GEMM_KC_BLOCKS 16
#define GEMM_TOKEN_GROUP 240

/* ---- small helpers ------------------------------------------------------ */

/* sum of n int8 values (n a multiple of 32) */
static int32_t sum_i8(const int8_t *x, size_t n) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    for (size_t k = 0; k < n; k += 32) {
        const __m256i p = _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(x + k)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones16));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

BV_ALWAYS_INLINE int32_t hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* four vectors of 8 int32 lanes -> their four lane sums, in order */
BV_ALWAYS_INLINE __m128i reduce4(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* ---- ternary GEMV (decode) -----------------------------------------------
 * A 32-byte block b and b >> 4 (per 16-bit lane; the bits shifted in from the
 * next byte are masked off) masked with 0x03 and 0x0C give four code vectors
 * that line up with x[0..31], x[32..63], x[64..95], x[96..127]:
 *   b & 0x03 = c0, b & 0x0C = 4*c1, (b>>4) & 0x03 = c2, (b>>4) & 0x0C = 4*c3.
 * The x1 and x4 products go to two int16 accumulators, flushed to int32 every
 * GEMV_FLUSH_BLOCKS blocks, when the x4 one is shifted back (exact: it is a
 * multiple of 4). Bounds per block and int16 lane: x1 in [-1024, 1016], x4 in
 * [-4096, 4064]; over 8 blocks [-32768, 32512]. */
typedef struct {
    __m256i s1, s4, acc;
} tern_acc;

BV_ALWAYS_INLINE void tern_block(tern_acc *a, const uint8_t *p, const int8_t *xb, __m256i m03,
                                 __m256i m0c) {
    const __m256i b = _mm256_loadu_si256((const __m256i *)p);
    const __m256i b4 = _mm256_srli_epi16(b, 4);
    const __m256i x0 = _mm256_loadu_si256((const __m256i *)xb);
    const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb + 32));
    const __m256i x2 = _mm256_loadu_si256((const __m256i *)(xb + 64));
    const __m256i x3 = _mm256_loadu_si256((const __m256i *)(xb + 96));
    a->s1 = _mm256_add_epi16(a->s1, _mm256_maddubs_epi16(_mm256_and_si256(b, m03), x0));
    a->s4 = _mm256_add_epi16(a->s4, _mm256_maddubs_epi16(_mm256_and_si256(b, m0c), x1));
    a->s1 = _mm256_add_epi16(a->s1, _mm256_maddubs_epi16(_mm256_and_si256(b4, m03), x2));
    a->s4 = _mm256_add_epi16(a->s4, _mm256_maddubs_epi16(_mm256_and_si256(b4, m0c), x3));
}

BV_ALWAYS_INLINE void tern_flush(tern_acc *a, __m256i ones16) {
    a->acc = _mm256_add_epi32(a->acc, _mm256_madd_epi16(a->s1, ones16));
    a->acc = _mm256_add_epi32(a->acc, _mm256_srai_epi32(_mm256_madd_epi16(a->s4, ones16), 2));
    a->s1 = a->s4 = _mm256_setzero_si256();
}

static void avx2_ternary_gemv(const uint8_t *w, int nb, const int8_t *x, int32_t *y, int r0,
                              int r1) {
    const size_t rb = (size_t)nb * BV_BLOCK_BYTES;
    const int32_t sx = sum_i8(x, (size_t)nb * BV_QK);
    const __m256i m03 = _mm256_set1_epi8(0x03), m0c = _mm256_set1_epi8(0x0C);
    const __m256i ones16 = _mm256_set1_epi16(1);
    const stream_ahead ahead = stream_distances(GEMV_ROWS * rb);
    stream_start(w + (size_t)r0 * rb, (size_t)(r1 - r0) * rb, ahead);
    int r = r0;
    for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {
        const uint8_t *wr = w + (size_t)r * rb;
        tern_acc a[GEMV_ROWS];
        for (int i = 0; i < GEMV_ROWS; i++) a[i].s1 = a[i].s4 = a[i].acc = _mm256_setzero_si256();
        for (int k0 = 0; k0 < nb; k0 += GEMV_FLUSH_BLOCKS) {
            const int k1 = nb - k0 < GEMV_FLUSH_BLOCKS ? nb : k0 + GEMV_FLUSH_BLOCKS;
            for (int k = k0; k < k1; k++) {
#pragma GCC unroll 4
                for (int i = 0; i < GEMV_ROWS; i++) {
                    const uint8_t *p = wr + (size_t)i * rb + (size_t)k * BV_BLOCK_BYTES;
                    if (!(k & 1)) stream_prefetch(p, ahead); /* one 64-byte line per two blocks */
                    tern_block(&a[i], p, x + (size_t)k * BV_QK, m03, m0c);
                }
            }
            for (int i = 0; i < GEMV_ROWS; i++) tern_flush(&a[i], ones16);
        }
        const __m128i s = reduce4(a[0].acc, a[1].acc, a[2].acc, a[3].acc);
        _mm_storeu_si128((__m128i *)(y + r), _mm_sub_epi32(s, _mm_set1_epi32(sx)));
    }
    for (; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        tern_acc a = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int k0 = 0; k0 < nb; k0 += GEMV_FLUSH_BLOCKS) {
            const int k1 = nb - k0 < GEMV_FLUSH_BLOCKS ? nb : k0 + GEMV_FLUSH_BLOCKS;
            for (int k = k0; k < k1; k++)
                tern_block(&a, wr + (size_t)k * BV_BLOCK_BYTES, x + (size_t)k * BV_QK, m03, m0c);
            tern_flush(&a, ones16);
        }
        y[r] = hsum8(a.acc) - sx;
    }
}

/* ---- ternary GEMM (prefill) ----------------------------------------------
 * unpack_codes: rows [r, r + nrows) (the rest of the GEMM_ROWS rows are zero
 * codes, computed but never stored), blocks [kb0, kb0 + nkb) -> buf, one plain
 * code byte (0..2) per weight in column order, row i at i * nkb * 128. */
static void unpack_codes(const uint8_t *w, size_t rb, int r, int nrows, int kb0, int nkb,
                         uint8_t *buf) {
    const __m256i three = _mm256_set1_epi8(3);
    for (int i = 0; i < GEMM_ROWS; i++) {
        uint8_t *dst = buf + (size_t)i * nkb * BV_QK;
        if (i >= nrows) {
            for (int k = 0; k < nkb * BV_QK; k += 32)
                _mm256_store_si256((__m256i *)(dst + k), _mm256_setzero_si256());
            continue;
        }
        const uint8_t *src = w + (size_t)(r + i) * rb + (size_t)kb0 * BV_BLOCK_BYTES;
        for (int k = 0; k < nkb; k++) {
            const __m256i b =
                _mm256_loadu_si256((const __m256i *)(src + (size_t)k * BV_BLOCK_BYTES));
            __m256i *d = (__m256i *)(dst + (size_t)k * BV_QK);
            _mm256_store_si256(d + 0, _mm256_and_si256(b, three));
            _mm256_store_si256(d + 1, _mm256_and_si256(_mm256_srli_epi16(b, 2), three));
            _mm256_store_si256(d + 2, _mm256_and_si256(_mm256_srli_epi16(b, 4), three));
            _mm256_store_si256(d + 3, _mm256_and_si256(_mm256_srli_epi16(b, 6), three));
        }
    }
}

/* One register tile: GEMM_ROWS (3) rows of unpacked codes (stride ldb) x 3
 * tokens (x0..x2 already offset to this K chunk) over ncols <= 2048 columns,
 * in 9 int16 accumulators. Per 32 columns an accumulator gains one vpmaddubsw
 * pair sum in [-512, 508]; 64 steps stay in [-32768, 32512], hence the
 * 2048-column chunk. Fewer than 3 tokens: only T are computed and stored;
 * rows beyond nr are zero codes and are not stored. first: store
 * partial - sum(x), else add the partial to Y.
 *
 * Why 3 x 3 and not 4 x 3: vpmaddubsw takes its unsigned operand (the codes)
 * from a register, so 4 x 3 needs 12 accumulators, 3 activations, a row of
 * codes and a product: 17 registers. GCC then spilled an accumulator to the
 * stack and re-read two tokens' activations from L1 for every row: 17 loads
 * and 2 stores per 12 products, bound by the load ports (measured on Zen 3:
 * ~37 multiply-adds per cycle, a 24-token prefill 73 tok/s on the 2B
 * shapes). 3 x 3 loads 6 vectors per 9 products and keeps every accumulator
 * in a register. Named variables, not arrays, for the same reason. */
#define TILE_ROW(i)                                                                          \
    do {                                                                                     \
        const __m256i wv = _mm256_load_si256((const __m256i *)(buf + (size_t)(i) * ldb + k)); \
        a##i##0 = _mm256_add_epi16(a##i##0, _mm256_maddubs_epi16(wv, xv0));                  \
        if (T > 1) a##i##1 = _mm256_add_epi16(a##i##1, _mm256_maddubs_epi16(wv, xv1));       \
        if (T > 2) a##i##2 = _mm256_add_epi16(a##i##2, _mm256_maddubs_epi16(wv, xv2));       \
    } while (0)

/* the GEMM_ROWS (3) rows' sums of one token into y[0..nr) */
BV_ALWAYS_INLINE void tile_store(__m256i a0, __m256i a1, __m256i a2, int nr, int32_t *y, int first,
                                 int32_t sx) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m128i s = reduce4(_mm256_madd_epi16(a0, ones16), _mm256_madd_epi16(a1, ones16),
                        _mm256_madd_epi16(a2, ones16), _mm256_setzero_si256());
    int32_t v[4];
    _mm_storeu_si128((__m128i *)v, s);
    for (int i = 0; i < nr; i++) y[i] = first ? v[i] - sx : y[i] + v[i];
}

/* T (1..3 tokens) is a constant in each copy below: a part-filled last tile
 * of a token group does only its own products (with T as a variable, a
 * 4-token prefill cost as much as a 6-token one) */
BV_ALWAYS_INLINE void gemm_tile_tokens(const uint8_t *buf, size_t ldb, const int8_t *x0,
                                       const int8_t *x1, const int8_t *x2, size_t ncols,
                                       const int T, int nr, int32_t *Y, int ldy, int first,
                                       const int32_t *sx) {
    __m256i a00, a01, a02, a10, a11, a12, a20, a21, a22;
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = _mm256_setzero_si256();
    for (size_t k = 0; k < ncols; k += 32) {
        const __m256i xv0 = _mm256_loadu_si256((const __m256i *)(x0 + k));
        const __m256i xv1 = T > 1 ? _mm256_loadu_si256((const __m256i *)(x1 + k)) : xv0;
        const __m256i xv2 = T > 2 ? _mm256_loadu_si256((const __m256i *)(x2 + k)) : xv0;
        TILE_ROW(0);
        TILE_ROW(1);
        TILE_ROW(2);
    }
    tile_store(a00, a10, a20, nr, Y, first, sx[0]);
    if (T > 1) tile_store(a01, a11, a21, nr, Y + ldy, first, sx[1]);
    if (T > 2) tile_store(a02, a12, a22, nr, Y + 2 * (size_t)ldy, first, sx[2]);
}

__attribute__((noinline)) static void gemm_tile(const uint8_t *buf, size_t ldb, const int8_t *x0,
                                                const int8_t *x1, const int8_t *x2, size_t ncols,
                                                int T, int nr, int32_t *Y, int ldy, int first,
                                                const int32_t *sx) {
    if (T >= 3)
        gemm_tile_tokens(buf, ldb, x0, x1, x2, ncols, 3, nr, Y, ldy, first, sx);
    else if (T == 2)
        gemm_tile_tokens(buf, ldb, x0, x1, x2, ncols, 2, nr, Y, ldy, first, sx);
    else
        gemm_tile_tokens(buf, ldb, x0, x1, x2, ncols, 1, nr, Y, ldy, first, sx);
}

static void avx2_ternary_gemm(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y,
                              int ldy, int r0, int r1) {
    if (n <= 2) {
        /* Too few tokens to pay for unpacking: stream the packed rows per token. */
        for (int t = 0; t < n; t++)
            avx2_ternary_gemv(w, nb, X + (size_t)t * nb * BV_QK, Y + (size_t)t * ldy, r0, r1);
        return;
    }
    const size_t rb = (size_t)nb * BV_BLOCK_BYTES;
    const size_t ldx = (size_t)nb * BV_QK;
    _Alignas(32) uint8_t buf[GEMM_ROWS * GEMM_KC_BLOCKS * BV_QK];
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
                    gemm_tile(buf, ldb, x0, x1, x2, ldb, T, nr, Yg + (size_t)t0 * ldy + r, ldy,
                              kb0 == 0, sx + t0);
                }
            }
        }
    }
}

/* ---- int8 GEMV (LM head) ---------------------------------------------------
 * No small operand, so no vpmaddubsw (its u8 x s8 pairs would saturate, and
 * the |x| sign trick breaks on -128): both sides widen to int16 and vpmaddwd
 * adds exact products pairwise into int32. The widened x is shared by
 * GEMV_ROWS rows. */
BV_ALWAYS_INLINE __m256i i8_dot32(__m256i acc, const int8_t *q, __m256i xl, __m256i xh) {
    const __m256i ql = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));
    const __m256i qh = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(ql, xl));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(qh, xh));
}

static void avx2_int8_gemv(const int8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1) {
    const size_t cols = (size_t)nb * BV_QK;
    const stream_ahead ahead = stream_distances(GEMV_ROWS * cols);
    stream_start(q + (size_t)r0 * cols, (size_t)(r1 - r0) * cols, ahead);
    int r = r0;
    for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {
        const int8_t *qr = q + (size_t)r * cols;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t k = 0; k < cols; k += 32) {
            if (!(k & 63))
                for (int i = 0; i < GEMV_ROWS; i++) stream_prefetch(qr + (size_t)i * cols + k, ahead);
            const __m256i xl = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + k)));
            const __m256i xh = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + k + 16)));
            a0 = i8_dot32(a0, qr + k, xl, xh);
            a1 = i8_dot32(a1, qr + cols + k, xl, xh);
            a2 = i8_dot32(a2, qr + 2 * cols + k, xl, xh);
            a3 = i8_dot32(a3, qr + 3 * cols + k, xl, xh);
        }
        _mm_storeu_si128((__m128i *)(y + r), reduce4(a0, a1, a2, a3));
    }
    for (; r < r1; r++) {
        const int8_t *qr = q + (size_t)r * cols;
        __m256i a = _mm256_setzero_si256();
        for (size_t k = 0; k < cols; k += 32) {
            const __m256i xl = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + k)));
            const __m256i xh = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + k + 16)));
            a = i8_dot32(a, qr + k, xl, xh);
        }
        y[r] = hsum8(a);
    }
}

/* ---- int4 GEMV (LM head) ---------------------------------------------------
 * A 64-byte group: low nibbles of bytes 0..31 and 32..63 are the codes
 * (v + 8, 0..15) of columns 0..31 and 32..63, high nibbles of 64..127; the
 * four vpmaddubsw of one group sum to [-15360, 15240] per int16 lane, then
 * widen. sum v*x = sum code*x - 8 * sum x. */
BV_ALWAYS_INLINE __m256i i4_group(__m256i acc, const uint8_t *p, const int8_t *xg, __m256i lo4,
                                  __m256i ones16) {
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)p);
    const __m256i b1 = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i s = _mm256_maddubs_epi16(_mm256_and_si256(b0, lo4),
                                     _mm256_loadu_si256((const __m256i *)xg));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(b1, lo4),
                                                 _mm256_loadu_si256((const __m256i *)(xg + 32))));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(b0, 4), lo4),
                                                 _mm256_loadu_si256((const __m256i *)(xg + 64))));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(b1, 4), lo4),
                                                 _mm256_loadu_si256((const __m256i *)(xg + 96))));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(s, ones16));
}

static void avx2_int4_gemv(const uint8_t *q, int nb, const int8_t *x, int32_t *y, int r0,
                           int r1) {
    const size_t rb = (size_t)nb * BV_I4_GROUP_BYTES;
    const int32_t sx8 = 8 * sum_i8(x, (size_t)nb * BV_QK);
    const __m256i lo4 = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
    const stream_ahead ahead = stream_distances(GEMV_ROWS * rb);
    stream_start(q + (size_t)r0 * rb, (size_t)(r1 - r0) * rb, ahead);
    int r = r0;
    for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {
        const uint8_t *qr = q + (size_t)r * rb;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int g = 0; g < nb; g++) {
            const size_t o = (size_t)g * BV_I4_GROUP_BYTES;
            const int8_t *xg = x + (size_t)g * BV_QK;
            stream_prefetch(qr + o, ahead);
            a0 = i4_group(a0, qr + o, xg, lo4, ones16);
            stream_prefetch(qr + rb + o, ahead);
            a1 = i4_group(a1, qr + rb + o, xg, lo4, ones16);
            stream_prefetch(qr + 2 * rb + o, ahead);
            a2 = i4_group(a2, qr + 2 * rb + o, xg, lo4, ones16);
            stream_prefetch(qr + 3 * rb + o, ahead);
            a3 = i4_group(a3, qr + 3 * rb + o, xg, lo4, ones16);
        }
        _mm_storeu_si128((__m128i *)(y + r),
                         _mm_sub_epi32(reduce4(a0, a1, a2, a3), _mm_set1_epi32(sx8)));
    }
    for (; r < r1; r++) {
        const uint8_t *qr = q + (size_t)r * rb;
        __m256i a = _mm256_setzero_si256();
        for (int g = 0; g < nb; g++)
            a = i4_group(a, qr + (size_t)g * BV_I4_GROUP_BYTES, x + (size_t)g * BV_QK, lo4, ones16);
        y[r] = hsum8(a) - sx8;
    }
}

/* ---- float helpers (f16 LM head, attention, KV cache conversions) ---------
 * F16C converts 8 halves at a time; tails go through a zero-padded 8-lane
 * scratch. Not bit-exact with ref.c: sums run in a different order (within
 * the tolerance the model tests name). The conversions themselves are exact:
 * vcvtph2ps / vcvtps2ph with round-to-nearest-even give the bits of ref.c's
 * bit-manipulating converters for every non-NaN value. */
BV_ALWAYS_INLINE __m256 load_h8(const uint16_t *p, int left) {
    if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    uint16_t tmp[8] = {0};
    for (int i = 0; i < left; i++) tmp[i] = p[i];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

BV_ALWAYS_INLINE __m256 load_f8(const float *p, int left) {
    if (left >= 8) return _mm256_loadu_ps(p);
    float tmp[8] = {0};
    for (int i = 0; i < left; i++) tmp[i] = p[i];
    return _mm256_loadu_ps(tmp);
}

BV_ALWAYS_INLINE void store_f8(float *p, __m256 v, int left) {
    if (left >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (int i = 0; i < left; i++) p[i] = tmp[i];
}

BV_ALWAYS_INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void avx2_f16_to_f32(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i += 8) store_f8(dst + i, load_h8(src + i, n - i), n - i);
}

static void avx2_f32_to_f16(const float *src, uint16_t *dst, int n) {
    for (int i = 0; i < n; i += 8) {
        const __m128i h =
            _mm256_cvtps_ph(load_f8(src + i, n - i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        if (n - i >= 8) {
            _mm_storeu_si128((__m128i *)(dst + i), h);
        } else {
            uint16_t tmp[8];
            _mm_storeu_si128((__m128i *)tmp, h);
            for (int j = 0; j < n - i; j++) dst[i + j] = tmp[j];
        }
    }
}

/* y[r] = sum_k W[r][k] * x[k], W rows of `cols` halves; 4 rows share each
 * x load (the head is 128256 rows, 2 bytes per weight). Two accumulators
 * per row, 16 columns a step, the tail apart: with one accumulator and a
 * tail check in every load the loop was compute-bound, even in cache.
 * Measured, kernel alone on one thread (CPU time, Zen 4 EPYC VM, AVX2 path):
 * 64 rows in L2 11.0 -> 27.9 GB/s; the 2B head from memory 54.2 -> 32.4 ms
 * (12.1 -> 20.2 GB/s; a plain NumPy read: 18.9 GB/s). */
BV_ALWAYS_INLINE void f16_rows4(const uint16_t *w0, int cols, const float *x, float *y) {
    const uint16_t *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int k = 0;
    for (; k + 16 <= cols; k += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w0 + k))), x0, a0);
        b0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w0 + k + 8))), x1, b0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w1 + k))), x0, a1);
        b1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w1 + k + 8))), x1, b1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w2 + k))), x0, a2);
        b2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w2 + k + 8))), x1, b2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w3 + k))), x0, a3);
        b3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w3 + k + 8))), x1, b3);
    }
    for (; k < cols; k += 8) {
        const int left = cols - k;
        const __m256 xv = load_f8(x + k, left);
        a0 = _mm256_fmadd_ps(load_h8(w0 + k, left), xv, a0);
        a1 = _mm256_fmadd_ps(load_h8(w1 + k, left), xv, a1);
        a2 = _mm256_fmadd_ps(load_h8(w2 + k, left), xv, a2);
        a3 = _mm256_fmadd_ps(load_h8(w3 + k, left), xv, a3);
    }
    y[0] = hsum_ps(_mm256_add_ps(a0, b0));
    y[1] = hsum_ps(_mm256_add_ps(a1, b1));
    y[2] = hsum_ps(_mm256_add_ps(a2, b2));
    y[3] = hsum_ps(_mm256_add_ps(a3, b3));
}

static void avx2_f16_gemv(const uint16_t *w, int cols, const float *x, float *y, int r0, int r1) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) f16_rows4(w + (size_t)r * cols, cols, x, y + r);
    for (; r < r1; r++) {
        const uint16_t *wr = w + (size_t)r * cols;
        __m256 a = _mm256_setzero_ps();
        for (int k = 0; k < cols; k += 8)
            a = _mm256_fmadd_ps(load_h8(wr + k, cols - k), load_f8(x + k, cols - k), a);
        y[r] = hsum_ps(a);
    }
}

/* ---- attention (see bv_kernels.h attn_span; the AVX-512 twin explains the
 * blocks and tiles). 16 ymm registers: V goes 16 floats of o at a time. */
#define ATTN_BLOCK 8
#define ATTN_TILE 4

/* e^x for x <= 0: degree-6 Taylor on |f| <= ln2/2, 2^n built in the exponent bits */
BV_ALWAYS_INLINE __m256 exp_nonpos_ps(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    f = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), f);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* K/V rows are f16 (the default cache) or int8 codes with one float step per
 * row (kv_quant "int8", bv_kernels.h attn_span_i8). The helpers below take
 * untyped rows and a constant `i8`; being always inlined into the two entry
 * points, each cache format gets its own copy, and the f16 one is the same
 * code (the same bits) as before the int8 cache existed. */
BV_ALWAYS_INLINE const void *kv_row(const void *rows, size_t t, int hd, int i8) {
    return (const char *)rows + t * (size_t)hd * (i8 ? 1 : 2);
}

/* 8 elements d.. of a row as floats (int8: the codes, not yet scaled); left < 8: zero-padded */
BV_ALWAYS_INLINE __m256 load_kv8(const void *row, int d, int left, int i8) {
    if (!i8) return load_h8((const uint16_t *)row + d, left);
    const int8_t *p = (const int8_t *)row + d;
    if (left >= 8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
    int8_t tmp[8] = {0};
    for (int i = 0; i < left; i++) tmp[i] = p[i];
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)tmp)));
}

BV_ALWAYS_INLINE void prefetch_kv(const void *rows, int t, int left, int hd, int i8) {
    prefetch_kv_bytes(rows, t, left, hd * (i8 ? 1 : 2));
}

/* left: positions from kb to the end of the span, for the K/V row prefetches
 * (x86_prefetch.h; 0: none). ks: the rows' steps (int8; NULL for f16) */
BV_ALWAYS_INLINE void attn_block_scores(const float *q, int nh, const void *kb, const float *ks, int nt, int left,
                                        int hd, float scale, float s[ATTN_TILE][ATTN_BLOCK], int i8) {
    for (int t = 0; t < nt; t += 2) {
        const int pair = t + 1 < nt;
        __m256 a0[ATTN_TILE], a1[ATTN_TILE];
        for (int h = 0; h < ATTN_TILE; h++) a0[h] = a1[h] = _mm256_setzero_ps();
        prefetch_kv(kb, t, left, hd, i8);
        prefetch_kv(kb, t + 1, left, hd, i8);
        const void *k0p = kv_row(kb, (size_t)t, hd, i8), *k1p = kv_row(kb, (size_t)t + 1, hd, i8);
        for (int d = 0; d < hd; d += 8) {
            const __m256 k0 = load_kv8(k0p, d, hd - d, i8);
            const __m256 k1 = pair ? load_kv8(k1p, d, hd - d, i8) : _mm256_setzero_ps();
#pragma GCC unroll 4
            for (int h = 0; h < ATTN_TILE; h++)
                if (h < nh) {
                    const __m256 qh = load_f8(q + (size_t)h * hd + d, hd - d);
                    a0[h] = _mm256_fmadd_ps(qh, k0, a0[h]);
                    a1[h] = _mm256_fmadd_ps(qh, k1, a1[h]);
                }
        }
        const float sc0 = i8 ? ks[t] * scale : scale, sc1 = i8 && pair ? ks[t + 1] * scale : scale;
        for (int h = 0; h < nh; h++) {
            s[h][t] = hsum_ps(a0[h]) * sc0;
            if (pair) s[h][t + 1] = hsum_ps(a1[h]) * sc1;
        }
    }
}

/* [sum a0, sum a1, ..., sum a7]: eight horizontal sums in one vector */
BV_ALWAYS_INLINE __m256 hsum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                                __m256 a7) {
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* The full-tile path (ATTN_TILE heads, hd % 16 == 0: the 2B shapes' every
 * tile) keeps a block's scores as the pair reduction makes them: pair j,
 * positions 2j and 2j + 1, is one vector with lanes
 *     [h0 2j, h0 2j+1, h1 2j, h1 2j+1, h2 2j, h2 2j+1, h3 2j, h3 2j+1].
 * The softmax then works on four vectors for all four heads at once (a
 * head's running maximum and sum sit in both lanes of its pair), and the
 * values pass reads its weights from the same layout. Scattering the scores
 * into a [head][position] array and a scalar max and sum per head cost a
 * fifth of the span's time (measured on Zen 3: 35.7 ns per position of a
 * 4-head tile at hd 128, of which ~7 ns was that softmax). */
#define ATTN_PAIRS (ATTN_BLOCK / 2)

/* lanes of pair j that hold a position of the block (nt positions) */
BV_ALWAYS_INLINE __m256 pair_lanes_valid(int j, int nt) {
    const __m256 parity = _mm256_setr_ps(0, 1, 0, 1, 0, 1, 0, 1);
    return _mm256_cmp_ps(_mm256_add_ps(parity, _mm256_set1_ps((float)(2 * j))), _mm256_set1_ps((float)nt),
                         _CMP_LT_OQ);
}

/* each lane: the larger of its head's two lanes */
BV_ALWAYS_INLINE __m256 pair_max(__m256 x) { return _mm256_max_ps(x, _mm256_permute_ps(x, 0xB1)); }

/* r[j]: scale * q_h . k_t of the pair's positions; lanes past nt are -inf. The
 * accumulators are named registers: the generic loop kept its arrays on the
 * stack (every FMA a load and a store), which bound decode attention to
 * ~4 GB/s of K/V per thread whatever the cache. */
BV_ALWAYS_INLINE void attn_tile_scores(const float *q, const void *kb, const float *ks, int nt, int left, int hd,
                                       float scale, __m256 r[ATTN_PAIRS], int i8) {
    const float *q0 = q, *q1 = q + hd, *q2 = q + 2 * (size_t)hd, *q3 = q + 3 * (size_t)hd;
    for (int j = 0; j < ATTN_PAIRS; j++) {
        const int t = 2 * j;
        if (t >= nt) {
            r[j] = _mm256_set1_ps(-INFINITY);
            continue;
        }
        const int pair = t + 1 < nt;
        const void *k0p = kv_row(kb, (size_t)t, hd, i8), *k1p = pair ? kv_row(kb, (size_t)t + 1, hd, i8) : k0p;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        prefetch_kv(kb, t, left, hd, i8);
        prefetch_kv(kb, t + 1, left, hd, i8);
        for (int d = 0; d < hd; d += 8) {
            const __m256 k0 = load_kv8(k0p, d, 8, i8);
            const __m256 k1 = load_kv8(k1p, d, 8, i8);
            __m256 qh = _mm256_loadu_ps(q0 + d);
            a0 = _mm256_fmadd_ps(qh, k0, a0);
            a1 = _mm256_fmadd_ps(qh, k1, a1);
            qh = _mm256_loadu_ps(q1 + d);
            a2 = _mm256_fmadd_ps(qh, k0, a2);
            a3 = _mm256_fmadd_ps(qh, k1, a3);
            qh = _mm256_loadu_ps(q2 + d);
            a4 = _mm256_fmadd_ps(qh, k0, a4);
            a5 = _mm256_fmadd_ps(qh, k1, a5);
            qh = _mm256_loadu_ps(q3 + d);
            a6 = _mm256_fmadd_ps(qh, k0, a6);
            a7 = _mm256_fmadd_ps(qh, k1, a7);
        }
        /* f16: one scale; int8: each position's step times it (lanes alternate t, t + 1) */
        __m256 sc = _mm256_set1_ps(scale);
        if (i8) {
            const float sc0 = ks[t] * scale, sc1 = pair ? ks[t + 1] * scale : sc0;
            sc = _mm256_setr_ps(sc0, sc1, sc0, sc1, sc0, sc1, sc0, sc1);
        }
        r[j] = _mm256_mul_ps(hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7), sc);
        if (!pair) r[j] = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), r[j], pair_lanes_valid(j, nt));
    }
}

/* The online softmax step of one block for the four heads: r becomes
 * e^(s - m) (0 past nt), the running maximum mv and sum lv (two partial sums
 * per head, one per lane of its pair) are updated, and o's rows are rescaled
 * for the heads whose maximum grew. */
BV_ALWAYS_INLINE void attn_tile_softmax(__m256 r[ATTN_PAIRS], int nt, __m256 *mv, __m256 *lv, float *o, int hd) {
    const __m256 block_max = pair_max(_mm256_max_ps(_mm256_max_ps(r[0], r[1]), _mm256_max_ps(r[2], r[3])));
    const __m256 m_new = _mm256_max_ps(*mv, block_max);
    const int grew = _mm256_movemask_ps(_mm256_cmp_ps(m_new, *mv, _CMP_GT_OQ));
    if (grew) { /* rescale what was summed to the new maximum (the first block: 0 * e^-87) */
        const __m256 c = exp_nonpos_ps(_mm256_sub_ps(*mv, m_new));
        *lv = _mm256_mul_ps(*lv, c);
        _Alignas(32) float cs[8];
        _mm256_store_ps(cs, c);
        for (int h = 0; h < ATTN_TILE; h++) {
            if (!((grew >> (2 * h)) & 1)) continue;
            const __m256 ch = _mm256_set1_ps(cs[2 * h]);
            float *oh = o + (size_t)h * hd;
            for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(oh + d, _mm256_mul_ps(_mm256_loadu_ps(oh + d), ch));
        }
        *mv = m_new;
    }
    for (int j = 0; j < ATTN_PAIRS; j++) {
        r[j] = exp_nonpos_ps(_mm256_sub_ps(r[j], *mv));
        if (2 * j + 1 >= nt) /* exp(-87) is not 0 */
            r[j] = _mm256_and_ps(r[j], pair_lanes_valid(j, nt));
    }
    *lv = _mm256_add_ps(*lv, _mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])));
}

/* attn_block_values for a full tile and hd % 16 == 0, accumulators in named
 * registers for the same reason as attn_tile_scores. pw: the weights of the
 * rows as stored (int8: already times each row's step), in the pair layout:
 * head h, position t at pw[t / 2][2h + t % 2] */
BV_ALWAYS_INLINE void attn_tile_values(const float pw[ATTN_PAIRS][8], const void *vb, int nt, int left, int hd,
                                       float *o, int i8) {
    float *o0 = o, *o1 = o + hd, *o2 = o + 2 * (size_t)hd, *o3 = o + 3 * (size_t)hd;
    for (int d0 = 0; d0 < hd; d0 += 16) {
        __m256 a0 = _mm256_loadu_ps(o0 + d0), b0 = _mm256_loadu_ps(o0 + d0 + 8);
        __m256 a1 = _mm256_loadu_ps(o1 + d0), b1 = _mm256_loadu_ps(o1 + d0 + 8);
        __m256 a2 = _mm256_loadu_ps(o2 + d0), b2 = _mm256_loadu_ps(o2 + d0 + 8);
        __m256 a3 = _mm256_loadu_ps(o3 + d0), b3 = _mm256_loadu_ps(o3 + d0 + 8);
        for (int t = 0; t < nt; t++) {
            if (d0 == 0) prefetch_kv(vb, t, left, hd, i8);
            const void *vt = kv_row(vb, (size_t)t, hd, i8);
            const __m256 v0 = load_kv8(vt, d0, 8, i8);
            const __m256 v1 = load_kv8(vt, d0 + 8, 8, i8);
            const float *pt = pw[t >> 1] + (t & 1);
            __m256 ph = _mm256_broadcast_ss(pt);
            a0 = _mm256_fmadd_ps(ph, v0, a0);
            b0 = _mm256_fmadd_ps(ph, v1, b0);
            ph = _mm256_broadcast_ss(pt + 2);
            a1 = _mm256_fmadd_ps(ph, v0, a1);
            b1 = _mm256_fmadd_ps(ph, v1, b1);
            ph = _mm256_broadcast_ss(pt + 4);
            a2 = _mm256_fmadd_ps(ph, v0, a2);
            b2 = _mm256_fmadd_ps(ph, v1, b2);
            ph = _mm256_broadcast_ss(pt + 6);
            a3 = _mm256_fmadd_ps(ph, v0, a3);
            b3 = _mm256_fmadd_ps(ph, v1, b3);
        }
        _mm256_storeu_ps(o0 + d0, a0);
        _mm256_storeu_ps(o0 + d0 + 8, b0);
        _mm256_storeu_ps(o1 + d0, a1);
        _mm256_storeu_ps(o1 + d0 + 8, b1);
        _mm256_storeu_ps(o2 + d0, a2);
        _mm256_storeu_ps(o2 + d0 + 8, b2);
        _mm256_storeu_ps(o3 + d0, a3);
        _mm256_storeu_ps(o3 + d0 + 8, b3);
    }
}

BV_ALWAYS_INLINE void attn_block_values(float p[ATTN_TILE][ATTN_BLOCK], int nh, const void *vb, int nt, int left,
                                        int hd, float *o, int i8) {
    for (int d0 = 0; d0 < hd; d0 += 16) {
        const int left0 = hd - d0, left1 = hd - d0 - 8;
        __m256 acc[ATTN_TILE][2];
        for (int h = 0; h < ATTN_TILE; h++) {
            acc[h][0] = h < nh ? load_f8(o + (size_t)h * hd + d0, left0) : _mm256_setzero_ps();
            acc[h][1] = h < nh && left1 > 0 ? load_f8(o + (size_t)h * hd + d0 + 8, left1) : _mm256_setzero_ps();
        }
        for (int t = 0; t < nt; t++) {
            if (d0 == 0) prefetch_kv(vb, t, left, hd, i8);
            const void *vt = kv_row(vb, (size_t)t, hd, i8);
            const __m256 v0 = load_kv8(vt, d0, left0, i8);
            const __m256 v1 = left1 > 0 ? load_kv8(vt, d0 + 8, left1, i8) : _mm256_setzero_ps();
#pragma GCC unroll 4
            for (int h = 0; h < ATTN_TILE; h++)
                if (h < nh) {
                    const __m256 ph = _mm256_set1_ps(p[h][t]);
                    acc[h][0] = _mm256_fmadd_ps(ph, v0, acc[h][0]);
                    acc[h][1] = _mm256_fmadd_ps(ph, v1, acc[h][1]);
                }
        }
        for (int h = 0; h < nh; h++) {
            store_f8(o + (size_t)h * hd + d0, acc[h][0], left0);
            if (left1 > 0) store_f8(o + (size_t)h * hd + d0 + 8, acc[h][1], left1);
        }
    }
}

/* softmax step of one block for each head of a tile: s becomes e^(s - m),
 * m and l are updated and o rescaled when the maximum grows */
BV_ALWAYS_INLINE void attn_block_softmax(float s[ATTN_TILE][ATTN_BLOCK], int nh, int nt, int hd, float *mt, float *lt,
                                         float *ot) {
    for (int h = 0; h < nh; h++) {
        float block_max = -INFINITY;
        for (int t = 0; t < nt; t++) block_max = s[h][t] > block_max ? s[h][t] : block_max;
        for (int t = nt; t < ATTN_BLOCK; t++) s[h][t] = -INFINITY;
        if (block_max > mt[h]) { /* rescale what was summed to the new maximum */
            const float c = expf(mt[h] - block_max);
            lt[h] *= c;
            float *oh = ot + (size_t)h * hd;
            for (int d = 0; d < hd; d++) oh[d] *= c;
            mt[h] = block_max;
        }
        __m256 p = exp_nonpos_ps(_mm256_sub_ps(_mm256_load_ps(s[h]), _mm256_set1_ps(mt[h])));
        _mm256_store_ps(s[h], p);
        for (int t = nt; t < ATTN_BLOCK; t++) s[h][t] = 0.0f; /* exp(-87) is not 0 */
        for (int t = 0; t < nt; t++) lt[h] += s[h][t];
    }
}

/* A full tile (see attn_tile_scores) over the span, either cache format */
BV_ALWAYS_INLINE void attn_span_full_tile(const float *qt, int first, const void *k, const float *ks, const void *v,
                                          const float *vs, int n, int hd, float scale, float *m, float *l, float *ot,
                                          int i8) {
    __m256 mv = _mm256_set1_ps(-INFINITY), lv = _mm256_setzero_ps();
    memset(ot, 0, sizeof(float) * ATTN_TILE * (size_t)hd);
    for (int t0 = 0; t0 < n; t0 += ATTN_BLOCK) {
        const int nt = n - t0 < ATTN_BLOCK ? n - t0 : ATTN_BLOCK;
        const int left = first ? n - t0 : 0; /* later passes find the rows in cache */
        const void *kb = kv_row(k, (size_t)t0, hd, i8), *vb = kv_row(v, (size_t)t0, hd, i8);
        __m256 r[ATTN_PAIRS];
        attn_tile_scores(qt, kb, i8 ? ks + t0 : NULL, nt, left, hd, scale, r, i8);
        attn_tile_softmax(r, nt, &mv, &lv, ot, hd);
        _Alignas(32) float pw[ATTN_PAIRS][8];
        for (int j = 0; j < ATTN_PAIRS; j++) {
            if (i8 && 2 * j < nt) { /* the value rows' steps go into the weights, once per position */
                const float s0 = vs[t0 + 2 * j], s1 = 2 * j + 1 < nt ? vs[t0 + 2 * j + 1] : 0.0f;
                r[j] = _mm256_mul_ps(r[j], _mm256_setr_ps(s0, s1, s0, s1, s0, s1, s0, s1));
            }
            _mm256_store_ps(pw[j], r[j]);
        }
        attn_tile_values(pw, vb, nt, left, hd, ot, i8);
    }
    _Alignas(32) float ms[8], ls[8];
    _mm256_store_ps(ms, mv);
    _mm256_store_ps(ls, lv);
    for (int h = 0; h < ATTN_TILE; h++) {
        m[h] = ms[2 * h];
        l[h] = ls[2 * h] + ls[2 * h + 1];
    }
}

/* one tile of nh <= ATTN_TILE heads over the span, either cache format */
BV_ALWAYS_INLINE void attn_span_tile(const float *qt, int nh, int first, const void *k, const float *ks, const void *v,
                                     const float *vs, int n, int hd, float scale, float *m, float *l, float *ot,
                                     int i8) {
    /* a full tile of heads with hd % 16 == 0 (2B: every tile) takes the
     * register-tiled path; it depends on the shapes only, so a model
     * computes the same bits for any thread count and chunking */
    if (nh == ATTN_TILE && hd % 16 == 0) {
        attn_span_full_tile(qt, first, k, ks, v, vs, n, hd, scale, m, l, ot, i8);
        return;
    }
    float mt[ATTN_TILE], lt[ATTN_TILE];
    for (int h = 0; h < nh; h++) {
        mt[h] = -INFINITY;
        lt[h] = 0.0f;
    }
    memset(ot, 0, sizeof(float) * (size_t)nh * hd);
    for (int t0 = 0; t0 < n; t0 += ATTN_BLOCK) {
        const int nt = n - t0 < ATTN_BLOCK ? n - t0 : ATTN_BLOCK;
        _Alignas(32) float s[ATTN_TILE][ATTN_BLOCK], pv[ATTN_TILE][ATTN_BLOCK];
        const int left = first ? n - t0 : 0;
        const void *kb = kv_row(k, (size_t)t0, hd, i8), *vb = kv_row(v, (size_t)t0, hd, i8);
        attn_block_scores(qt, nh, kb, i8 ? ks + t0 : NULL, nt, left, hd, scale, s, i8);
        attn_block_softmax(s, nh, nt, hd, mt, lt, ot);
        float(*p)[ATTN_BLOCK] = s;
        if (i8) { /* the value rows' steps go into the weights, once per position */
            const __m256 steps = load_f8(vs + t0, nt); /* past nt: 0, and s is 0 there too */
            for (int h = 0; h < nh; h++) _mm256_store_ps(pv[h], _mm256_mul_ps(_mm256_load_ps(s[h]), steps));
            p = pv;
        }
        attn_block_values(p, nh, vb, nt, left, hd, ot, i8);
    }
    for (int h = 0; h < nh; h++) {
        m[h] = mt[h];
        l[h] = lt[h];
    }
}

static void avx2_attn_span(const float *q, int group, const uint16_t *k, const uint16_t *v, int n, int hd,
                           float scale, float *m, float *l, float *o) {
    for (int g0 = 0; g0 < group; g0 += ATTN_TILE) {
        const int nh = group - g0 < ATTN_TILE ? group - g0 : ATTN_TILE;
        attn_span_tile(q + (size_t)g0 * hd, nh, g0 == 0, k, NULL, v, NULL, n, hd, scale, m + g0, l + g0,
                       o + (size_t)g0 * hd, 0);
    }
}

/* Exported (bv_ prefix) for the AVX-512 table too: see x86_avx512.c */
void bv_avx2_attn_span_i8(const float *q, int group, const int8_t *k8, const float *ks, const int8_t *v8,
                          const float *vs, int n, int hd, float scale, float *m, float *l, float *o) {
    for (int g0 = 0; g0 < group; g0 += ATTN_TILE) {
        const int nh = group - g0 < ATTN_TILE ? group - g0 : ATTN_TILE;
        attn_span_tile(q + (size_t)g0 * hd, nh, g0 == 0, k8, ks, v8, vs, n, hd, scale, m + g0, l + g0,
                       o + (size_t)g0 * hd, 1);
    }
}

/* The quantized-LoRA rows: the reference's C source, vectorized by this
 * file's flags; the same bits as ref (kernels/lora_rows.h). */
#define BV_LORA_PREFIX avx2_
#include "lora_rows.h"

const bv_kernels bv_kernels_avx2 = {
    .name = "avx2",
    .ternary_gemv = avx2_ternary_gemv,
    .ternary_gemm = avx2_ternary_gemm,
    /* measured on the 2B shapes, 2 threads, CPU ms per step, the VM otherwise
     * idle (Zen 3), with the 3 x 3 GEMM tile and its part-filled copies: 3 tokens
     * 120 by GEMV against 121-123 by GEMM, 4: 142-145 vs 144-145, 5: 170 vs
     * 169-172, 6: 194-199 vs 188-192. A tie up to 6; the GEMV streams each row
     * once per step for all the tokens, so it keeps them. */
    .batch_gemv_max = 6,
    .int8_gemv = avx2_int8_gemv,
    .int4_gemv = avx2_int4_gemv,
    .f16_gemv = avx2_f16_gemv,
    .attn_span = avx2_attn_span,
    .attn_span_i8 = bv_avx2_attn_span_i8,
    .f16_to_f32 = avx2_f16_to_f32,
    .f32_to_f16 = avx2_f32_to_f16,
    .lora_i8_gemv = avx2_lora_i8_gemv,
    .lora_i4_gemv = avx2_lora_i4_gemv,
};

#endif /* x86-64 */
