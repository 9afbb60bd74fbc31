/* x86_amx.c - the AVX-512 path's two prefill GEMMs (2-bit and T1) with the
 * products on the AMX tile unit. Compiled alone with the AVX-512 flags plus
 * -mamx-tile -mamx-int8, and only when the compiler knows them (setup.py);
 * dispatch.c offers the "amx" path only where cpuid reports AMX-TILE and
 * AMX-INT8 and Linux grants this process the tile state, and fills every
 * other entry of the table from the AVX-512 one. Exact, like every kernel.
 *
 * On CPUs with AMX-INT8, TDPBUSD multiplies a 16 x 64 tile of unsigned bytes
 * by a 64 x 16 tile of signed ones (16 x 16 x 64 products, ~8x what two
 * vpdpbusd ports do), so prefill is bound by unpacking the weights. The
 * weights are therefore the A tiles, in their natural row-major order: a T1
 * block's digit d is already 64 consecutive columns, so unpacking is the
 * vpmaddubsw chain and a store, with no transpose. The activations are the B
 * tiles (4 consecutive columns of 16 tokens per 64-byte tile row: "VNNI"
 * order), packed once per call with tokens past n left zero, so any token
 * count runs on tiles. A C tile is 16 rows x 16 tokens: the epilogue
 * transposes it into Y's token rows and subtracts sum(x) as the zmm path does.
 * The whole row length is one K chunk: the C tiles drain once per block.
 * Tiles: 0-3 C (row tile i, token tile j: tile 2i + j), 4-5 A, 6-7 B. */
#if defined(__x86_64__) || defined(_M_X64)

#if !defined(__AMX_TILE__) || !defined(__AMX_INT8__) || !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "x86_amx.c must be compiled with the AVX-512 flags and -mamx-tile -mamx-int8"
#endif

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "bv_kernels.h"
#include "x86_avx512_shared.h"

#define AMX_TOKENS 16 /* tokens per B tile */
#define AMX_ROWS 32   /* weight rows per pass: two 16-row A tiles */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* one packed row -> its kpad codes in column order */
typedef void (*row_codes_fn)(const uint8_t *src, int kpad, uint8_t *dst);

static void row_codes_2bit(const uint8_t *src, int kpad, uint8_t *dst) {
    const __m512i three = _mm512_set1_epi8(3);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi64x(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi64(4), _mm256_set1_epi64x(6), 1);
    for (int k = 0; k < kpad / BV_QK; k++) { /* the codes of weights 0..63, then 64..127 */
        const __m512i bc =
            _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(src + (size_t)k * BV_BLOCK_BYTES)));
        _mm512_store_si512((void *)(dst + (size_t)k * BV_QK), _mm512_and_si512(_mm512_srlv_epi64(bc, sh_a), three));
        _mm512_store_si512((void *)(dst + (size_t)k * BV_QK + 64), _mm512_and_si512(_mm512_srlv_epi64(bc, sh_b), three));
    }
}

static void row_codes_t1(const uint8_t *src, int kpad, uint8_t *dst) {
    const __m512i k30 = _mm512_set1_epi16(3), k03 = _mm512_set1_epi16(3 << 8);
    const __m512i hi = _mm512_set1_epi16((short)0xFF00);
    for (int b = 0; b < kpad / BV_T1_QK; b++) {
        const __m512i q = _mm512_loadu_si512((const void *)(src + (size_t)b * BV_T1_BLOCK_BYTES));
        __m512i pe = _mm512_maddubs_epi16(q, k30), po = _mm512_maddubs_epi16(q, k03);
        for (int d = 0; d < 5; d++) {
            /* even bytes' codes from pe's high bytes, odd bytes' from po's */
            _mm512_store_si512((void *)(dst + (size_t)b * BV_T1_QK + 64 * d),
                               _mm512_ternarylogic_epi32(_mm512_srli_epi16(pe, 8), po, hi, 0xF8));
            if (d < 4) {
                pe = _mm512_maddubs_epi16(pe, k30);
                po = _mm512_maddubs_epi16(po, k30);
            }
        }
    }
}

/* X rows [0, n) -> xv[token tile][step][16 tokens x 4 bytes], zero past n */
static void amx_pack_x(const int8_t *X, size_t ldx, int n, int kpad, int8_t *xv) {
    const int steps = kpad / 4;
    for (int t0 = 0; t0 < n; t0 += AMX_TOKENS) {
        int8_t *tile = xv + (size_t)(t0 / AMX_TOKENS) * steps * 64;
        for (int c = 0; c < kpad; c += 64) {
            __m512i v[16], out[16];
            for (int i = 0; i < 16; i++)
                v[i] = t0 + i < n ? _mm512_loadu_si512((const void *)(X + (size_t)(t0 + i) * ldx + c))
                                  : _mm512_setzero_si512();
            transpose16(v, out); /* out[j] = dword j (columns c + 4j..) of the 16 tokens */
            for (int j = 0; j < 16; j++) _mm512_store_si512((void *)(tile + (size_t)(c / 4 + j) * 64), out[j]);
        }
    }
}

/* Y[t][r..] = C - sum(x_t) for one 16-row x 16-token C tile in c (rows 64 bytes
 * apart): transposed into token rows, rows past nr and tokens past nt left out */
static void amx_store_c(const int32_t *c, int nr, int nt, const int32_t *sx, int32_t *Y, int ldy) {
    __m512i v[16], out[16];
    for (int i = 0; i < 16; i++) v[i] = _mm512_load_si512((const void *)(c + i * 16));
    transpose16(v, out); /* out[t] = the 16 rows of token t */
    const __mmask16 m = tail_mask(nr);
    for (int t = 0; t < nt; t++)
        _mm512_mask_storeu_epi32(Y + (size_t)t * ldy, m, _mm512_sub_epi32(out[t], _mm512_set1_epi32(sx[t])));
}

static int gemm_amx(const uint8_t *w, size_t rb, int kpad, row_codes_fn row_codes, const int8_t *X, int n,
                    int32_t *Y, int ldy, int r0, int r1) {
    const size_t ldx = (size_t)kpad;
    const int n_tiles = (n + AMX_TOKENS - 1) / AMX_TOKENS, n_blocks = (n_tiles + 1) / 2;
    const size_t xv_bytes = (size_t)n_blocks * 2 * AMX_TOKENS * kpad; /* whole blocks: a zero tile pads */
    const size_t wb_bytes = (size_t)AMX_ROWS * kpad;
    const size_t sx_bytes = ((size_t)n * sizeof(int32_t) + 63) / 64 * 64;
    uint8_t *mem = aligned_alloc(64, xv_bytes + wb_bytes + sx_bytes);
    if (!mem) return -1;
    int8_t *xv = (int8_t *)mem;
    uint8_t *wbuf = mem + xv_bytes;
    int32_t *sx = (int32_t *)(mem + xv_bytes + wb_bytes);
    memset(xv, 0, xv_bytes);
    amx_pack_x(X, ldx, n, kpad, xv);
    for (int t = 0; t < n; t++) sx[t] = sum_i8(X + (size_t)t * ldx, ldx);
    const size_t tile_bytes = (size_t)kpad / 4 * 64; /* one token tile of xv */
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
    _Alignas(64) int32_t c[4][16 * 16];
    for (int r = r0; r < r1; r += AMX_ROWS) {
        const int nr = r1 - r < AMX_ROWS ? r1 - r : AMX_ROWS;
        for (int i = 0; i < AMX_ROWS; i++) { /* rows past nr: zero codes */
            if (i < nr) row_codes(w + (size_t)(r + i) * rb, kpad, wbuf + (size_t)i * kpad);
            else memset(wbuf + (size_t)i * kpad, 0, (size_t)kpad);
        }
        for (int blk = 0; blk < n_blocks; blk++) {
            const int8_t *b0 = xv + (size_t)(2 * blk) * tile_bytes, *b1 = b0 + tile_bytes;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int k = 0; k < kpad; k += 64) {
                _tile_loadd(4, wbuf + k, ldx);
                _tile_loadd(5, wbuf + (size_t)16 * kpad + k, ldx);
                _tile_loadd(6, b0 + (size_t)k * 16, 64);
                _tile_loadd(7, b1 + (size_t)k * 16, 64);
                _tile_dpbusd(0, 4, 6);
                _tile_dpbusd(1, 4, 7);
                _tile_dpbusd(2, 5, 6);
                _tile_dpbusd(3, 5, 7);
            }
            _tile_stored(0, c[0], 64);
            _tile_stored(1, c[1], 64);
            _tile_stored(2, c[2], 64);
            _tile_stored(3, c[3], 64);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    const int rr = i * 16, t0 = (2 * blk + j) * AMX_TOKENS;
                    const int nri = nr - rr < 16 ? nr - rr : 16, ntj = n - t0 < 16 ? n - t0 : 16;
                    if (nri > 0 && ntj > 0)
                        amx_store_c(c[2 * i + j], nri, ntj, sx + t0, Y + (size_t)t0 * ldy + r + rr, ldy);
                }
        }
    }
    /* give the tile state back, so the kernel need not save 8 KB of tiles at
     * every context switch of this thread */
    _tile_release();
    free(mem);
    return 0;
}

/* Few tokens, or no memory for the packed activations: the AVX-512 GEMM
 * (its own GEMV fallback included); the same exact results. */
static void amx_ternary_gemm(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y, int ldy, int r0,
                             int r1) {
    if (n >= GEMM_MIN_TOKENS &&
        gemm_amx(w, (size_t)nb * BV_BLOCK_BYTES, nb * BV_QK, row_codes_2bit, X, n, Y, ldy, r0, r1) == 0)
        return;
    bv_kernels_avx512.ternary_gemm(w, nb, X, n, Y, ldy, r0, r1);
}

/* A few tokens (up to the AVX-512 table's t1_batch_max: concurrent sessions'
 * decode steps) take its one-pass batch kernel: the tiles would be mostly
 * zero tokens, and unpacking every row into memory for them costs more than
 * unpacking it in registers (measured below, at the table). */
static void amx_t1_gemm(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy, int r0,
                        int r1) {
    if (n > bv_kernels_avx512.t1_batch_max &&
        gemm_amx(w, (size_t)nb1 * BV_T1_BLOCK_BYTES, nb1 * BV_T1_QK, row_codes_t1, X, n, Y, ldy, r0, r1) == 0)
        return;
    bv_kernels_avx512.t1_gemm(w, nb1, X, n, Y, ldy, r0, r1);
}

/* Only the GEMMs: dispatch.c takes the other entries from bv_kernels_avx512. */
const bv_kernels bv_kernels_amx = {
    .name = "amx",
    .ternary_gemm = amx_ternary_gemm,
    .t1_gemm = amx_t1_gemm,
    .prefer_t1 = 1, /* as avx512: the decode GEMVs are the same */
    .batch_gemv_max = GEMM_MIN_TOKENS - 1, /* as avx512 */
    .t1_batch_max = 8,                     /* as avx512 (amx_t1_gemm hands those to it) */
    .int8_batch_max = 8,                   /* as avx512 (its int8_gemm) */
};

#endif /* x86-64 */
