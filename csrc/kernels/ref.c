/* ref.c - the scalar reference kernels. Plain C, no intrinsics: the contract
 * that every SIMD path is tested against (bit-exact integer results), and the
 * path that runs on a CPU with no x86 SIMD at all. */
#include <math.h>
#include <string.h>

#include "bv_kernels.h"

/* IEEE half <-> float by bit manipulation (round to nearest even), so the
 * reference path needs no F16C and gives the same bits on every CPU. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp + 127 - 15) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000u) { /* subnormal or zero half */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 113 - (int)(absx >> 23) + 13;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((absx >> 13) - ((127 - 15) << 10)), rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

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

/* T1: digit i of a byte is (((byte * 3^i) mod 256) * 3) >> 8 (bv_format.h) */
static int32_t t1_row_dot(const uint8_t *row, int nb1, const int8_t *x) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    int32_t acc = 0;
    for (int b = 0; b < nb1; b++) {
        const uint8_t *blk = row + (size_t)b * BV_T1_BLOCK_BYTES;
        const int8_t *xb = x + (size_t)b * BV_T1_QK;
        for (int j = 0; j < BV_T1_BLOCK_BYTES; j++)
            for (int i = 0; i < 5; i++) {
                uint8_t y = (uint8_t)(blk[j] * pow3[i]);
                int code = (y * 3) >> 8;
                acc += (code - 1) * xb[j + BV_T1_BLOCK_BYTES * i];
            }
    }
    return acc;
}

static void ref_t1_gemv(const uint8_t *w, int nb1, const int8_t *x, int32_t *y, int r0, int r1) {
    size_t row_bytes = (size_t)nb1 * BV_T1_BLOCK_BYTES;
    for (int r = r0; r < r1; r++) y[r] = t1_row_dot(w + (size_t)r * row_bytes, nb1, x);
}

static void ref_t1_gemm(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy, int r0,
                        int r1) {
    size_t row_bytes = (size_t)nb1 * BV_T1_BLOCK_BYTES, x_stride = (size_t)nb1 * BV_T1_QK;
    for (int t = 0; t < n; t++)
        for (int r = r0; r < r1; r++)
            Y[(size_t)t * ldy + r] = t1_row_dot(w + (size_t)r * row_bytes, nb1, X + t * x_stride);
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

static void ref_int8_gemm(const int8_t *q, int nb, const int8_t *X, int n, int32_t *Y, int ldy, int r0, int r1) {
    for (int t = 0; t < n; t++) ref_int8_gemv(q, nb, X + (size_t)t * nb * BV_QK, Y + (size_t)t * ldy, r0, r1);
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

static void ref_f16_to_f32(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

static void ref_f32_to_f16(const float *src, uint16_t *dst, int n) {
    for (int i = 0; i < n; i++) dst[i] = float_to_half(src[i]);
}

static void ref_f16_gemv(const uint16_t *w, int cols, const float *x, float *y, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = w + (size_t)r * cols;
        float acc = 0.0f;
        for (int k = 0; k < cols; k++) acc += half_to_float(row[k]) * x[k];
        y[r] = acc;
    }
}

/* One position at a time with a running maximum (online softmax): when a
 * score beats the maximum, what was summed so far is rescaled to it. */
static void ref_attn_span(const float *q, int group, const uint16_t *k, const uint16_t *v, int n, int hd,
                          float scale, float *m, float *l, float *o) {
    for (int g = 0; g < group; g++) {
        const float *qg = q + (size_t)g * hd;
        float *og = o + (size_t)g * hd;
        float mg = -INFINITY, lg = 0.0f;
        for (int d = 0; d < hd; d++) og[d] = 0.0f;
        for (int t = 0; t < n; t++) {
            const uint16_t *kt = k + (size_t)t * hd, *vt = v + (size_t)t * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += qg[d] * half_to_float(kt[d]);
            s *= scale;
            if (s > mg) {
                float c = expf(mg - s); /* 0 for the first position (mg = -inf) */
                lg *= c;
                for (int d = 0; d < hd; d++) og[d] *= c;
                mg = s;
            }
            float p = expf(s - mg);
            lg += p;
            for (int d = 0; d < hd; d++) og[d] += p * half_to_float(vt[d]);
        }
        m[g] = mg;
        l[g] = lg;
    }
}

/* ref_attn_span on the int8 cache: s_t = (q . k8_t) * (ks[t] * scale);
 * o += p_t * vs[t] * v8_t (the steps applied once per position, not per code) */
static void ref_attn_span_i8(const float *q, int group, const int8_t *k8, const float *ks, const int8_t *v8,
                             const float *vs, int n, int hd, float scale, float *m, float *l, float *o) {
    for (int g = 0; g < group; g++) {
        const float *qg = q + (size_t)g * hd;
        float *og = o + (size_t)g * hd;
        float mg = -INFINITY, lg = 0.0f;
        for (int d = 0; d < hd; d++) og[d] = 0.0f;
        for (int t = 0; t < n; t++) {
            const int8_t *kt = k8 + (size_t)t * hd, *vt = v8 + (size_t)t * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += qg[d] * (float)kt[d];
            s *= ks[t] * scale;
            if (s > mg) {
                float c = expf(mg - s); /* 0 for the first position (mg = -inf) */
                lg *= c;
                for (int d = 0; d < hd; d++) og[d] *= c;
                mg = s;
            }
            float p = expf(s - mg);
            lg += p;
            float pv = p * vs[t];
            for (int d = 0; d < hd; d++) og[d] += pv * (float)vt[d];
        }
        m[g] = mg;
        l[g] = lg;
    }
}

/* The quantized-LoRA rows (the same C source as the SIMD files compile) */
#define BV_LORA_PREFIX ref_
#include "lora_rows.h"

const bv_kernels bv_kernels_ref = {
    .name = "ref",
    .ternary_gemv = ref_ternary_gemv,
    .ternary_gemm = ref_ternary_gemm,
    .int8_gemv = ref_int8_gemv,
    .int8_gemm = ref_int8_gemm,
    .int4_gemv = ref_int4_gemv,
    .t1_gemv = ref_t1_gemv,
    .t1_gemm = ref_t1_gemm,
    .prefer_t1 = 0, /* the scalar path reads the 2-bit layout just as fast */
    .batch_gemv_max = 3, /* as avx512 (the scalar GEMM is no faster per token) */
    .f16_gemv = ref_f16_gemv,
    .attn_span = ref_attn_span,
    .attn_span_i8 = ref_attn_span_i8,
    .f16_to_f32 = ref_f16_to_f32,
    .f32_to_f16 = ref_f32_to_f16,
    .lora_i8_gemv = ref_lora_i8_gemv,
    .lora_i4_gemv = ref_lora_i4_gemv,
};
