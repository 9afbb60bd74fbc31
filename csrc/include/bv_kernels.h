/* bv_kernels.h - the kernel table. One implementation per ISA
 * (kernels/ref.c, kernels/x86_avx2.c, kernels/x86_avx512.c, and
 * kernels/x86_amx.c for the AVX-512 path's GEMMs on AMX tiles), all with the
 * same contract, all exact: integer results must match the scalar reference
 * bit for bit on every shape. dispatch.c fills `bv_kern` once from cpuid or
 * from BITVOICE_KERNEL=ref|avx2|avx512|amx.
 *
 * Shapes: nb = padded cols / BV_QK. x / X rows are int8 activations padded
 * with zeros to nb * BV_QK. Row ranges [r0, r1) let the thread pool split a
 * matrix between workers.
 */
#ifndef BV_KERNELS_H
#define BV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "bv_format.h"

typedef struct {
    const char *name;
    /* decode: y[r] = sum_k T[r][k] * x[k] for r in [r0, r1). w: ternary rows. */
    void (*ternary_gemv)(const uint8_t *w, int nb, const int8_t *x, int32_t *y, int r0, int r1);
    /* prefill: Y[t][r] = sum_k T[r][k] * X[t][k], t < n, r in [r0, r1).
     * X rows are nb*BV_QK int8 apart; Y rows are ldy int32 apart. */
    void (*ternary_gemm)(const uint8_t *w, int nb, const int8_t *X, int n, int32_t *Y, int ldy,
                         int r0, int r1);
    /* int8 LM head: y[r] = sum_k Q[r][k] * x[k]; Q rows nb*BV_QK bytes apart. */
    void (*int8_gemv)(const int8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1);
    /* int8 LM head for n tokens: Y[t][r] = sum_k Q[r][k] * X[t][k], X rows
     * nb*BV_QK apart, Y rows ldy apart. forward.c calls it for 2..int8_batch_max
     * tokens (a batch of concurrent sessions' decode steps: each row streams
     * once for all of them); ref loops its GEMV, for the tests. */
    void (*int8_gemm)(const int8_t *q, int nb, const int8_t *X, int n, int32_t *Y, int ldy, int r0, int r1);
    int int8_batch_max; /* 0: none (the head then runs a GEMV per token over 128-row blocks) */
    /* int4 LM head: same with the int4 layout (rows nb*64 bytes apart). */
    void (*int4_gemv)(const uint8_t *q, int nb, const int8_t *x, int32_t *y, int r0, int r1);
    /* The same two ternary products on the T1 layout (nb1 = padded cols / 320;
     * x / X rows nb1 * 320 int8 apart). Exact, like the 2-bit ones. */
    void (*t1_gemv)(const uint8_t *w, int nb1, const int8_t *x, int32_t *y, int r0, int r1);
    void (*t1_gemm)(const uint8_t *w, int nb1, const int8_t *X, int n, int32_t *Y, int ldy, int r0,
                    int r1);
    /* 1 if this path runs T1 faster than the 2-bit layout: the loader then
     * repacks the model into T1. A table that sets it must set t1_gemv/gemm. */
    int prefer_t1;
    /* Products of 2..batch_gemv_max tokens (a batch of concurrent sessions'
     * decode steps) run one GEMV per token over L2-sized blocks of rows
     * (forward.c batch_gemv) instead of the GEMM: up to there that costs less
     * than the GEMM's unpacking, and the rows still stream once. 0: none. */
    int batch_gemv_max;
    /* t1_gemm of 2..t1_batch_max tokens streams and unpacks each row once for
     * all of them (x86_avx512.c t1_batch): forward.c then calls it directly
     * instead of batch_gemv. 0: none. */
    int t1_batch_max;

    /* Float kernels (results within a named tolerance of ref, not bit-exact). */
    /* f16 LM head: y[r] = sum_k W[r][k] * x[k], W f16 rows of `cols` halves. */
    void (*f16_gemv)(const uint16_t *w, int cols, const float *x, float *y, int r0, int r1);
    /* Attention of one group of query heads (GQA: the heads that share a KV
     * head) against one span of n >= 1 cached positions of that KV head.
     * For each head g < group, over the span's positions t:
     *   s_t = scale * q_g . k_t;   m_g = max_t s_t;
     *   l_g = sum_t exp(s_t - m_g);   o_g = sum_t exp(s_t - m_g) v_t
     * o_g is left undivided by l_g: forward.c merges the spans of a head.
     * q: group rows of hd floats; k, v: n rows of hd halves (one KV head's
     * cache is contiguous); o: group rows of hd floats. */
    void (*attn_span)(const float *q, int group, const uint16_t *k, const uint16_t *v, int n, int hd,
                      float scale, float *m, float *l, float *o);
    /* attn_span on the int8 KV cache (kv_quant "int8"): position t's row is
     * int8 codes k8[t][hd] with one float step ks[t] (k_t = k8_t * ks[t]),
     * the same for v. Within the float tolerance of ref, like attn_span. */
    void (*attn_span_i8)(const float *q, int group, const int8_t *k8, const float *ks, const int8_t *v8,
                         const float *vs, int n, int hd, float scale, float *m, float *l, float *o);
    void (*f16_to_f32)(const uint16_t *src, float *dst, int n);
    void (*f32_to_f16)(const float *src, uint16_t *dst, int n);
    /* Quantized LoRA factors (bitvoice.h bv_lora_mat): for r in [r0, r1),
     *   y[r] += step[r] * sum_k Q[r][k] * x[k]
     * int8: Q rows `cols` bytes apart; int4: rows BV_LORA_I4_ROW_BYTES(cols)
     * bytes apart (bv_format.h). Float results: within a tolerance of ref. */
    void (*lora_i8_gemv)(const int8_t *q, const float *step, int cols, const float *x, float *y, int r0,
                         int r1);
    void (*lora_i4_gemv)(const uint8_t *q, const float *step, int cols, const float *x, float *y, int r0,
                         int r1);
} bv_kernels;

/* Any entry a SIMD table leaves NULL is taken from the reference table
 * (prefer_t1 is not: a path uses T1 only when it says it is faster). */

extern bv_kernels bv_kern;                 /* the active table */
extern const bv_kernels bv_kernels_ref;
#ifdef BV_HAVE_X86_SIMD
extern const bv_kernels bv_kernels_avx2;
extern const bv_kernels bv_kernels_avx512;
/* x86_avx2.c's attn_span_i8, which the AVX-512 table uses too (x86_avx512.c says why) */
void bv_avx2_attn_span_i8(const float *q, int group, const int8_t *k8, const float *ks, const int8_t *v8,
                          const float *vs, int n, int hd, float scale, float *m, float *l, float *o);
#endif
#ifdef BV_HAVE_AMX
extern const bv_kernels bv_kernels_amx; /* kernels/x86_amx.c: only the GEMMs, on AMX-INT8 tiles */
#endif

/* Fills bv_kern. `want` is NULL (auto: best the CPU has, unless the
 * BITVOICE_KERNEL environment variable names one) or "ref"/"avx2"/"avx512"/"amx".
 * Returns 0, or -1 if the wanted path is unknown or the CPU lacks it. */
int bv_kernels_select(const char *want);
/* The table of a path by name ("ref", "avx2", "avx512", "amx") as its file defines it
 * (entries it leaves NULL stay NULL), or NULL if unknown or unsupported here. */
const bv_kernels *bv_kernels_named(const char *name);
/* The table of a path with every entry filled as bv_kernels_select would run
 * it (amx: the avx512 entries besides its GEMMs; then ref for the rest).
 * Returns 0, or -1 if unknown or unsupported here. */
int bv_kernels_resolved(const char *name, bv_kernels *out);
/* Which paths this CPU can run, as a bit set: 1 ref, 2 avx2, 4 avx512, 8 amx. */
unsigned bv_kernels_supported(void);

#endif
