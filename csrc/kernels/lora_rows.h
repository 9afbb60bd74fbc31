/* lora_rows.h - the quantized-LoRA row products, one C source for every
 * kernel file: kernels/ref.c compiles it for baseline x86-64 (or any CPU),
 * x86_avx2.c and x86_avx512.c with their own ISA flags, where the compiler
 * vectorizes the LORA_LANES loop into one or two wide registers. The results
 * are the same bits on every path: the same products and sums in the same
 * order (ISO C mode, -std=c11, forbids fusing them into FMAs), which the
 * kernel tests check exactly.
 *
 * `restrict` (y never overlaps the inputs: forward.c's lora_apply) and
 * size_t indices (Python builds with -fwrapv, under which int indices may
 * wrap) are what let the compiler vectorize the partial sums.
 *
 * Each includer defines BV_LORA_PREFIX (its kernel name prefix) before
 * including this file, e.g. ref_ -> ref_lora_i8_gemv / ref_lora_i4_gemv. */
#ifndef BV_LORA_PREFIX
#error "define BV_LORA_PREFIX before including lora_rows.h"
#endif
#include <stddef.h>
#include <stdint.h>

#include "bv_format.h"

#define BV_LORA_CAT2(a, b) a##b
#define BV_LORA_CAT(a, b) BV_LORA_CAT2(a, b)

/* Rows sum over LORA_LANES independent partial sums, combined in a fixed
 * order, so the compiler may vectorize them (a single running float sum may
 * not be reordered) and the result does not depend on the vector width. */
#define LORA_LANES 16

/* LoRA factors as int8 codes: y[r] += step[r] * (Q[r] . x) */
static void BV_LORA_CAT(BV_LORA_PREFIX, lora_i8_gemv)(const int8_t *restrict q, const float *restrict step, int cols,
                                                      const float *restrict x, float *restrict y, int r0, int r1) {
    const size_t n = (size_t)cols;
    for (int r = r0; r < r1; r++) {
        const int8_t *row = q + (size_t)r * n;
        float part[LORA_LANES] = {0}, acc = 0.0f;
        size_t k = 0;
        for (; k + LORA_LANES <= n; k += LORA_LANES)
            for (size_t l = 0; l < LORA_LANES; l++) part[l] += (float)row[k + l] * x[k + l];
        for (int l = 0; l < LORA_LANES; l++) acc += part[l];
        for (; k < n; k++) acc += (float)row[k] * x[k];
        y[r] += step[r] * acc;
    }
}

/* The same on int4 codes, two per byte (even column in the low nibble, code + 8) */
static void BV_LORA_CAT(BV_LORA_PREFIX, lora_i4_gemv)(const uint8_t *restrict q, const float *restrict step, int cols,
                                                      const float *restrict x, float *restrict y, int r0, int r1) {
    const size_t n = (size_t)cols, row_bytes = BV_LORA_I4_ROW_BYTES(n);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = q + (size_t)r * row_bytes;
        float part[LORA_LANES] = {0}, acc = 0.0f;
        size_t k = 0;
        for (; k + LORA_LANES <= n; k += LORA_LANES)
            for (size_t l = 0; l < LORA_LANES; l += 2) {
                uint8_t b = row[(k + l) >> 1];
                part[l] += (float)((b & 15) - BV_LORA_I4_ZERO) * x[k + l];
                part[l + 1] += (float)((b >> 4) - BV_LORA_I4_ZERO) * x[k + l + 1];
            }
        for (int l = 0; l < LORA_LANES; l++) acc += part[l];
        for (; k < n; k++) {
            int code = (k & 1) ? row[k >> 1] >> 4 : row[k >> 1] & 15;
            acc += (float)(code - BV_LORA_I4_ZERO) * x[k];
        }
        y[r] += step[r] * acc;
    }
}

#undef LORA_LANES
#undef BV_LORA_CAT
#undef BV_LORA_CAT2
