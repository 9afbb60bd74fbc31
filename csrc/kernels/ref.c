/* ref.c - the scalar reference kernels. Plain C, no intrinsics: the contract
 * that every SIMD path is tested against (bit-exact integer results), and the
 * path that runs on a CPU with no x86 SIMD at all. */
#include "bv_kernels.h"

/* dot of one ternary row (nb blocks) with int8 activations */
static int32_t ternary_row_dot(const uint8_t *row, int nb, const int8_t *x) {
    int32_t acc = 0;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * BV_BLOCK_BYTES;
        const int8_t *xb = x + (size_t)b * BV_QK;
        for (int j = 0; j < 32; j++) {
            uint8_t byte = blk[j];
            for (int q = 0; q < 4; q++) {
                int code = (byte >> (2 * q)) & 3; /* weight j + 32*q, stored as w + 1 */
                acc += (code - 1) * xb[j + 32 * q];
            }
        }
    }
    return acc;
}

static void ref_ternary_gemv(const uint8_t *w, int nb, const int8_t *x, int32_t *y, int r0, int r1) {
    size_t row_bytes = (size_t)nb * BV_BLOCK_BYTES;
    for (int r = r0; r < r1; r++) y[r] = ternary_row_dot(w + (size_t)r * row_bytes, nb, x);
}

static void ref_ternary_gemm(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y, int ldy,
                             int r0, int r1) {
    size_t row_bytes = (size_t)nb * BV_BLOCK_BYTES;
    size_t x_stride = (size_t)nb * BV_QK;
    for (int t = 0; t < n; t++)
        for (int r = r0; r < r1; r++)
            Y[(size_t)t * ldy + r] = ternary_row_dot(w + (size_t)r * row_bytes, nb, X + t * x_stride);
}

static void ref_int8_gemv(const int8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1) {
    size_t cols = (size_t)nb * BV_QK;
    for (int r = r0; r < r1; r++) {
        const int8_t *row = q + (size_t)r * cols;
        int32_t acc = 0;
        for (size_t k = 0; k < cols; k++) acc += row[k] * x[k];
        y[r] = acc;
    }
}

static void ref_int4_gemv(const uint8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1) {
    size_t row_bytes = (size_t)nb * BV_I4_GROUP_BYTES;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = q + (size_t)r * row_bytes;
        int32_t acc = 0;
        for (int g = 0; g < nb; g++) {
            const uint8_t *grp = row + (size_t)g * BV_I4_GROUP_BYTES;
            const int8_t *xg = x + (size_t)g * BV_QK;
            for (int j = 0; j < 64; j++) {
                acc += ((grp[j] & 15) - 8) * xg[j];
                acc += ((grp[j] >> 4) - 8) * xg[j + 64];
            }
        }
        y[r] = acc;
    }
}

const bv_kernels bv_kernels_ref = {
    .name = "ref",
    .ternary_gemv = ref_ternary_gemv,
    .ternary_gemm = ref_ternary_gemm,
    .int8_gemv = ref_int8_gemv,
    .int4_gemv = ref_int4_gemv,
};
