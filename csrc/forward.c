#define _POSIX_C_SOURCE 200809L
/* forward.c - the BitNet b1.58 forward pass, read top to bottom.
 *
 * Each block is commented with the NumPy line of engine/llm/reference.py that
 * it mirrors. Tokens are processed in chunks of up to BV_MAX_BATCH (prefill
 * runs the ternary GEMM; a single token runs the GEMV). Linears run on int8
 * activations quantized per token (absmax, as BitNet trains them) against the
 * packed ternary weights; integer results are rescaled by
 * (activation scale * weight scale). The KV cache is f16, or int8 rows with
 * a float step each (kv_quant "int8").
 *
 * A chunk's tokens need not share a cache: each token t carries its own cache
 * and position (chunk.kv[t], chunk.pos[t]). Prefill puts consecutive
 * positions of one cache in a chunk; batched decode puts one token of each of
 * several sequences, so their decode steps share one pass over the weights.
 * Every per-token step reads only its own row, so a row's bits never depend
 * on the other rows of its chunk.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitvoice.h"
#include "bv_kernels.h"

/* ---- small float helpers (single thread; cheap next to the matmuls) ---------- */

/* Reductions keep LANES independent partial results, combined in a fixed
 * order: the compiler can then use vector registers on any CPU (strict IEEE
 * forbids it to reorder a single running sum), and every kernel path gets the
 * same bits, since this file is compiled once for all of them. */
#define LANES 16

/* The element-wise helpers below run once per token between the matmuls,
 * single-threaded in decode (~1.2 ms of a 25 ms 2B token when built for
 * baseline x86-64, i.e. SSE2). GCC builds them again for AVX2 and AVX-512
 * and picks one at load time (ifunc). The bits do not change: the code is
 * the same C, ISO C mode (-std=c11) keeps -ffp-contract=off so no FMA is
 * formed, and every reduction is over LANES fixed partial sums, whatever
 * the vector width. */
#if defined(BV_HAVE_X86_SIMD) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__)
#define BV_FLOAT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BV_FLOAT_CLONES
#endif

/* o = x / sqrt(mean(x^2) + eps) * w                       (reference.rmsnorm) */
BV_FLOAT_CLONES static void rmsnorm(float *restrict o, const float *restrict x, const float *restrict w, int n, float eps) {
    float part[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) part[l] += x[i + l] * x[i + l];
    float ss = 0.0f;
    for (int l = 0; l < LANES; l++) ss += part[l];
    for (; i < n; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (i = 0; i < n; i++) o[i] = w[i] * (x[i] * inv);
}

/* q = clip(round(x * 127 / max(|x|max, 1e-5)), -128, 127), zero-padded to npad;
 * returns the dequantization step 1/s                    (reference.act_quant)
 * Rounding is to nearest even, like nearbyintf and numpy.round, done by adding
 * and subtracting 1.5 * 2^23 (exact for |v| < 2^22; here |v| <= 127.5): no
 * libm call per element, which baseline x86-64 would need for nearbyintf. */
BV_FLOAT_CLONES static float act_quant(const float *restrict x, int n, int npad, int8_t *restrict q) {
    const float magic = 12582912.0f;
    /* max |x| over the bit patterns with the sign cleared: for floats that
     * are not NaN, integer order is float order, and an integer max
     * vectorizes where a float one may not (NaN rules) */
    int32_t part[LANES] = {0}, amax_bits = 0;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            int32_t b;
            memcpy(&b, &x[i + l], 4);
            b &= 0x7FFFFFFF;
            part[l] = b > part[l] ? b : part[l];
        }
    for (int l = 0; l < LANES; l++) amax_bits = part[l] > amax_bits ? part[l] : amax_bits;
    for (; i < n; i++) {
        int32_t b;
        memcpy(&b, &x[i], 4);
        b &= 0x7FFFFFFF;
        amax_bits = b > amax_bits ? b : amax_bits;
    }
    float amax;
    memcpy(&amax, &amax_bits, 4);
    float s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    for (i = 0; i < n; i++) {
        float v = (x[i] * s + magic) - magic; /* not folded: no -ffast-math */
        /* clamped as an integer (v is a whole number, |v| < 2^22): integer
         * min/max vectorize, float compare-and-selects do not (strict IEEE) */
        int32_t iv = (int32_t)v;
        q[i] = (int8_t)(iv > 127 ? 127 : iv < -128 ? -128 : iv);
    }
    memset(q + n, 0, (size_t)(npad - n));
    return 1.0f / s;
}

/* The int8 KV cache's rows (bitvoice.h): one plain C function for every
 * kernel path (never cloned per ISA, never in a kernel table), so a row gets
 * the same codes whichever path runs. Rounding as in act_quant. */
void bv_kv_quant_row(const float *x, int n, int8_t *code, float *step) {
    const float magic = 12582912.0f;
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    /* the floor keeps 127 / amax finite; any row under it has |x * inv| < 127 */
    float inv = 127.0f / (amax > 1e-30f ? amax : 1e-30f);
    for (int i = 0; i < n; i++) {
        int32_t iv = (int32_t)((x[i] * inv + magic) - magic);
        code[i] = (int8_t)(iv > 127 ? 127 : iv < -127 ? -127 : iv);
    }
    *step = amax / 127.0f;
}

/* ---- threaded matmuls ------------------------------------------------------ */

/* out[t][r] = acc[t][r] * xs[t] * scale for rows [r0, r1) of every token (int32 -> float) */
BV_FLOAT_CLONES static void dequant(const int32_t *acc, int ldacc, const float *xs, int n, float scale, float *out,
                                    int ldo, int r0, int r1) {
    for (int t = 0; t < n; t++) { /* locals + restrict: the loop vectorizes */
        const int32_t *restrict a = acc + (size_t)t * ldacc;
        float *restrict o = out + (size_t)t * ldo;
        const float k = xs[t] * scale;
        for (int r = r0; r < r1; r++) o[r] = (float)a[r] * k;
    }
}

#define MAX_FUSED 3 /* q,k,v or gate,up run as one parallel job */
/* A batch of a few tokens (concurrent sessions' decode steps; up to the
 * path's bv_kern.batch_gemv_max) runs one GEMV per token over blocks of about
 * this many bytes of weights: the first token streams a block from memory,
 * the others find it in L2 (1 MB per core on Zen 4), so the weights stream
 * once per step, as for a single token (the kernels' own few-token fallback
 * streams the rows once per token). From there on the GEMMs, which unpack
 * each block of weights once for all tokens, take over. Exact integer
 * results either way. */
#define BATCH_GEMV_BLOCK_BYTES (256 << 10)

typedef struct {
    const bv_ternary *w[MAX_FUSED];
    int n_mats, total_rows;
    const int8_t *X; /* [n][npad] */
    int n;
    int32_t *Y;      /* [n][ldy], matrix j's rows at column offset sum(rows of 0..j-1) */
    int ldy;
    const float *xs;       /* [n] activation steps of X */
    float *out[MAX_FUSED]; /* [n][ldo[j]] matrix j's dequantized result */
    int ldo[MAX_FUSED];
} matmul_job;

/* Y[t][r] = T[r] . X[t] for rows [r0, r1) of a few tokens: a GEMV per token
 * over each L2-sized block of rows (see BATCH_GEMV_BLOCK_BYTES) */
static void batch_gemv(const bv_ternary *w, const int8_t *X, int n, int32_t *Y, int ldy, int r0, int r1) {
    int npad = w->t1 ? w->nb * BV_T1_QK : w->nb * BV_QK; /* X rows: padded columns */
    size_t row_bytes = (size_t)w->nb * (w->t1 ? BV_T1_BLOCK_BYTES : BV_BLOCK_BYTES);
    int block = (int)(BATCH_GEMV_BLOCK_BYTES / row_bytes) / 16 * 16;
    if (block < 16) block = 16;
    for (int b0 = r0; b0 < r1; b0 += block) {
        int b1 = r1 - b0 < block ? r1 : b0 + block;
        for (int t = 0; t < n; t++) {
            const int8_t *x = X + (size_t)t * npad;
            if (w->t1)
                bv_kern.t1_gemv(w->data, w->nb, x, Y + (size_t)t * ldy, b0, b1);
            else
                bv_kern.ternary_gemv(w->data, w->nb, x, Y + (size_t)t * ldy, b0, b1);
        }
    }
}

static void matmul_task(void *ctx, int task, int n_tasks) {
    matmul_job *j = ctx;
    int lo = (int)((long)j->total_rows * task / n_tasks);
    int hi = (int)((long)j->total_rows * (task + 1) / n_tasks);
    int base = 0;
    for (int mi = 0; mi < j->n_mats; mi++) {
        const bv_ternary *w = j->w[mi];
        int r0 = lo - base, r1 = hi - base;
        if (r0 < 0) r0 = 0;
        if (r1 > w->rows) r1 = w->rows;
        const int t1_batch = w->t1 && j->n <= bv_kern.t1_batch_max; /* t1_gemm's own few-token pass */
        if (r0 < r1 && j->n > 1 && j->n <= bv_kern.batch_gemv_max && !t1_batch)
            batch_gemv(w, j->X, j->n, j->Y + base, j->ldy, r0, r1);
        else if (r0 < r1 && w->t1) {
            if (j->n == 1)
                bv_kern.t1_gemv(w->data, w->nb, j->X, j->Y + base, r0, r1);
            else
                bv_kern.t1_gemm(w->data, w->nb, j->X, j->n, j->Y + base, j->ldy, r0, r1);
        } else if (r0 < r1) {
            if (j->n == 1)
                bv_kern.ternary_gemv(w->data, w->nb, j->X, j->Y + base, r0, r1);
            else
                bv_kern.ternary_gemm(w->data, w->nb, j->X, j->n, j->Y + base, j->ldy, r0, r1);
        }
        /* each task dequantizes the rows it just made, while they are in cache */
        if (r0 < r1) dequant(j->Y + base, j->ldy, j->xs, j->n, w->scale, j->out[mi], j->ldo[mi], r0, r1);
        base += w->rows;
    }
}

/* out_j[t] = (T_j X[t]) * xs[t] * scale_j for the fused matrices (same input
 * width), through the int32 scratch Y */
static void matmul(bv_model *m, const bv_ternary **w, int n_mats, int n, float **out, const int *ldo) {
    bv_state *s = &m->s;
    const bv_config *c = &m->cfg;
    matmul_job j = {.n_mats = n_mats, .X = s->xq, .n = n, .Y = s->acc, .xs = s->xs};
    j.ldy = bv_acc_width(c);
    for (int i = 0; i < n_mats; i++) {
        j.w[i] = w[i];
        j.out[i] = out[i];
        j.ldo[i] = ldo[i];
        j.total_rows += w[i]->rows;
    }
    int threads = bv_pool_threads(m->pool);
    /* decode (and a batch of a few decode steps) is memory-bound: one
     * contiguous slice per thread; prefill takes more, smaller tasks so an
     * uneven split does not leave a core idle */
    const int few = n == 1 || n <= bv_kern.batch_gemv_max || (w[0]->t1 && n <= bv_kern.t1_batch_max);
    int tasks = few ? threads : threads * 4;
    bv_pool_run(m->pool, matmul_task, &j, tasks);
}

/* y[r] += W[r] . x for float32 LoRA rows (LANES partial sums: vectorizable) */
BV_FLOAT_CLONES static void lora_f32_rows(const float *restrict w, int rows, int cols, const float *restrict x,
                                          float *restrict y) {
    for (int r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        float part[LANES] = {0}, acc = 0.0f;
        int k = 0;
        for (; k + LANES <= cols; k += LANES)
            for (int l = 0; l < LANES; l++) part[l] += row[k + l] * x[k + l];
        for (int l = 0; l < LANES; l++) acc += part[l];
        for (; k < cols; k++) acc += row[k] * x[k];
        y[r] += acc;
    }
}

/* y[r] += W[r] . x for each row of one LoRA factor, in its storage
 * (quantized: y[r] += step[r] * (Q[r] . x), the reference's
 * quantize_lora(W) = Q * step up to float rounding) */
static void lora_rows(const bv_lora_mat *w, int quant, const float *x, float *y) {
    if (quant == BV_LORA_INT8) {
        bv_kern.lora_i8_gemv(w->data, w->step, w->cols, x, y, 0, w->rows);
    } else if (quant == BV_LORA_INT4) {
        bv_kern.lora_i4_gemv(w->data, w->step, w->cols, x, y, 0, w->rows);
    } else {
        lora_f32_rows(w->data, w->rows, w->cols, x, y);
    }
}

/* y[t][r] += scale * B (A x[t])      (reference: y += lora.scale * (x @ A.T) @ B.T) */
static void lora_apply(bv_model *m, const bv_lora *lo, const float *x, int ldx, int n, float *y, int ldy) {
    if (lo->rank == 0) return;
    float *tmp = m->s.lora_tmp;
    for (int t = 0; t < n; t++) {
        memset(tmp, 0, sizeof(float) * (size_t)lo->rank);
        lora_rows(&lo->a, lo->quant, x + (size_t)t * ldx, tmp);
        for (int i = 0; i < lo->rank; i++) tmp[i] *= lo->scale;
        lora_rows(&lo->b, lo->quant, tmp, y + (size_t)t * ldy);
    }
}

/* o = rmsnorm(x, w); xq[t], xs[t] = act_quant(o), padded for the layout of the
 * matrices that read it (2-bit: 128, T1: 320) */
static void norm_quant(const bv_model *m, bv_state *s, int t, const float *x, const float *w, int width) {
    int npad = m->t1 ? bv_t1_pad_cols(width) : bv_pad_cols(width);
    float *o = s->xb + (size_t)t * width;
    rmsnorm(o, x, w, width, m->cfg.eps);
    s->xs[t] = act_quant(o, width, npad, s->xq + (size_t)t * npad);
}

/* The tokens of one forward pass, each with the cache it reads and extends
 * and its position there. */
typedef struct {
    int n;                       /* tokens, <= BV_MAX_BATCH */
    const int32_t *tokens;       /* [n] */
    bv_kv *kv[BV_MAX_BATCH];     /* [n] token t's cache */
    int pos[BV_MAX_BATCH];       /* [n] token t's position in kv[t] */
} chunk;

/* ---- attention ------------------------------------------------------------------
 * Work units are (token, KV head, span of positions). A unit runs the KV head's
 * group of query heads over its span (bv_kern.attn_span) and leaves, for each
 * query head, the softmax partial m (max score), l (sum of e^(s - m)) and o
 * (sum of e^(s - m) v). A second pass merges a head's spans:
 *     M = max m_i;   out = sum_i e^(m_i - M) o_i / sum_i e^(m_i - M) l_i
 * Spans share a long context out over every thread, and a KV head's cache is
 * read once for its whole group. They depend on the number of positions only,
 * never on the thread count: the same bits for any number of threads, and for
 * a token decoded alone or inside a prefill chunk. */

/* spans for a token that sees n_pos positions: ATTN_SPAN positions each, at
 * most s->attn_max_spans (then longer) */
static int attn_spans(const bv_state *s, int n_pos) {
    int spans = (n_pos + BV_ATTN_SPAN - 1) / BV_ATTN_SPAN;
    return spans < s->attn_max_spans ? spans : s->attn_max_spans;
}

typedef struct {
    bv_model *m;
    const chunk *ch;
    int layer;
    int first_unit[BV_MAX_BATCH + 1]; /* token t owns units [first_unit[t], first_unit[t + 1]) */
} attn_job;

/* a unit's partials: [group] m, [group] l, [group][hd] o */
static float *attn_partial(const bv_model *m, int t, int kvh, int span) {
    const bv_config *c = &m->cfg;
    int group = c->n_heads / c->n_kv_heads;
    size_t unit = ((size_t)t * c->n_kv_heads + kvh) * m->s.attn_max_spans + span;
    return m->s.attn_part + unit * (size_t)group * (c->head_dim + 2);
}

/* one task per unit: the pool hands them out as threads come free */
static void attn_task(void *ctx, int task, int n_tasks) {
    attn_job *j = ctx;
    bv_model *m = j->m;
    const bv_config *c = &m->cfg;
    bv_state *s = &m->s;
    int t = 0;
    while (task >= j->first_unit[t + 1]) t++;
    int unit = task - j->first_unit[t], n_pos = j->ch->pos[t] + 1;
    int spans = attn_spans(s, n_pos), kvh = unit / spans, span = unit % spans;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int p0 = (int)((long)n_pos * span / spans), p1 = (int)((long)n_pos * (span + 1) / spans);
    const bv_kv *kv = j->ch->kv[t];
    size_t first_row = ((size_t)j->layer * c->n_kv_heads + kvh) * kv->n_ctx + (size_t)p0, at = first_row * hd;
    float *part = attn_partial(m, t, kvh, span);
    const float *q = s->q + (size_t)t * c->dim + (size_t)kvh * group * hd, scale = 1.0f / sqrtf((float)hd);
    if (kv->quant == BV_KV_INT8)
        bv_kern.attn_span_i8(q, group, kv->k8 + at, kv->ks + first_row, kv->v8 + at, kv->vs + first_row, p1 - p0,
                             hd, scale, part, part + group, part + 2 * group);
    else
        bv_kern.attn_span(q, group, kv->k + at, kv->v + at, p1 - p0, hd, scale, part, part + group,
                          part + 2 * group);
}

/* xb2[t][head] = the merged spans, for a contiguous share of the (token, head) pairs */
static void attn_merge_task(void *ctx, int task, int n_tasks) {
    attn_job *j = ctx;
    bv_model *m = j->m;
    const bv_config *c = &m->cfg;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, pairs = j->ch->n * c->n_heads;
    int lo = (int)((long)pairs * task / n_tasks), hi = (int)((long)pairs * (task + 1) / n_tasks);
    for (int p = lo; p < hi; p++) {
        int t = p / c->n_heads, h = p % c->n_heads, kvh = h / group, g = h % group;
        int spans = attn_spans(&m->s, j->ch->pos[t] + 1);
        float big = -INFINITY, sum = 0.0f;
        for (int i = 0; i < spans; i++) {
            float mi = attn_partial(m, t, kvh, i)[g];
            big = mi > big ? mi : big;
        }
        float *restrict out = m->s.xb2 + (size_t)t * c->dim + (size_t)h * hd;
        for (int d = 0; d < hd; d++) out[d] = 0.0f;
        for (int i = 0; i < spans; i++) {
            const float *part = attn_partial(m, t, kvh, i);
            float w = expf(part[g] - big); /* spans are never empty: m is finite */
            sum += w * part[group + g];
            const float *restrict o = part + 2 * group + (size_t)g * hd;
            for (int d = 0; d < hd; d++) out[d] += w * o[d];
        }
        float inv = 1.0f / sum;
        for (int d = 0; d < hd; d++) out[d] *= inv;
    }
}

static void attention(bv_model *m, const chunk *ch, int layer) {
    attn_job j = {.m = m, .ch = ch, .layer = layer};
    for (int t = 0; t < ch->n; t++)
        j.first_unit[t + 1] = j.first_unit[t] + m->cfg.n_kv_heads * attn_spans(&m->s, ch->pos[t] + 1);
    bv_pool_run(m->pool, attn_task, &j, j.first_unit[ch->n]);
    bv_pool_run(m->pool, attn_merge_task, &j, bv_pool_threads(m->pool));
}

/* RoPE, rotate-half form:  x1' = x1 cos - x2 sin;  x2' = x2 cos + x1 sin  (reference.rope)
 * cs: the token's cos[half] then sin[half] (rope_angles) */
static void rope(float *v, int n_heads, int hd, const float *cs) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *restrict x = v + h * hd;
        for (int i = 0; i < half; i++) {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * cs[i] - x2 * cs[half + i];
            x[i + half] = x2 * cs[i] + x1 * cs[half + i];
        }
    }
}

/* cos and sin of pos * inv_freq for each token of the chunk: once per token,
 * not once per layer and per q/k */
static void rope_angles(bv_state *s, const chunk *ch, int hd) {
    int half = hd / 2;
    for (int t = 0; t < ch->n; t++) {
        float *cs = s->rope_cs + (size_t)t * hd;
        for (int i = 0; i < half; i++) {
            float angle = (float)ch->pos[t] * s->rope_inv[i];
            cs[i] = cosf(angle);
            cs[half + i] = sinf(angle);
        }
    }
}

/* ---- LM head --------------------------------------------------------------------- */

/* Head rows per block when several tokens share one pass over the head (a
 * batch, or a prefill that keeps every token's logits): each token's GEMV
 * over a block finds it in L2 (128 rows of 2560: 640 KB f16, 320 KB int8,
 * 160 KB int4), so the head streams from memory once per pass, not once per
 * token. A multiple of every GEMV's row group, so the rows are grouped as in
 * one call over the whole range: the same bits. */
#define HEAD_BLOCK_ROWS 128

typedef struct {
    bv_model *m;
    int n;            /* tokens */
    const float *x;   /* [n][dim] final-normed hidden states */
    const int8_t *xq; /* [n][pad(dim)] their int8 quantization (quantized heads) */
    const float *xs;  /* [n] its steps */
    float *logits;    /* [n][vocab] */
} head_job;

static void head_task(void *ctx, int task, int n_tasks) {
    head_job *j = ctx;
    bv_model *m = j->m;
    int vocab = m->cfg.vocab, dim = m->cfg.dim, nb = bv_blocks(dim), pad = bv_pad_cols(dim);
    int r0 = (int)((long)vocab * task / n_tasks), r1 = (int)((long)vocab * (task + 1) / n_tasks);
    if (m->w.head_quant == BV_HEAD_INT8 && j->n > 1 && j->n <= bv_kern.int8_batch_max) {
        /* a few tokens: one stream of the rows for all of them */
        bv_kern.int8_gemm((const int8_t *)m->w.head_q, nb, j->xq, j->n, (int32_t *)j->logits, vocab, r0, r1);
        for (int t = 0; t < j->n; t++) {
            float *logits = j->logits + (size_t)t * vocab;
            const int32_t *acc = (const int32_t *)logits;
            for (int r = r0; r < r1; r++) logits[r] = (float)acc[r] * j->xs[t] * m->w.head_q_scale[r];
        }
        return;
    }
    int block = j->n == 1 ? r1 - r0 : HEAD_BLOCK_ROWS; /* alone: one unbroken stream */
    for (int b0 = r0; b0 < r1; b0 += block) {
        int b1 = r1 - b0 < block ? r1 : b0 + block;
        for (int t = 0; t < j->n; t++) {
            float *logits = j->logits + (size_t)t * vocab;
            /* int32 partials are written into the logits row then rescaled in place:
             * same size (4 bytes), and each row is read before it is overwritten */
            int32_t *acc = (int32_t *)logits;
            const int8_t *xq = j->xq + (size_t)t * pad;
            if (m->w.head_quant == BV_HEAD_F16) {
                bv_kern.f16_gemv(m->w.head, dim, j->x + (size_t)t * dim, logits, b0, b1);
                continue;
            }
            if (m->w.head_quant == BV_HEAD_INT8)
                bv_kern.int8_gemv((const int8_t *)m->w.head_q, nb, xq, acc, b0, b1);
            else
                bv_kern.int4_gemv((const uint8_t *)m->w.head_q, nb, xq, acc, b0, b1);
            for (int r = b0; r < b1; r++) logits[r] = (float)acc[r] * j->xs[t] * m->w.head_q_scale[r];
        }
    }
}

/* logits[row0 + i] = rmsnorm(x[t0 + i], norm) @ head.T for i < n: the head
 * streamed once for the n tokens */
static void final_logits(bv_model *m, int t0, int n, int row0) {
    const bv_config *c = &m->cfg;
    bv_state *s = &m->s;
    int pad = bv_pad_cols(c->dim);
    float *xf = s->xb; /* scratch [n][dim]: free once a chunk's layers are done */
    head_job j = {.m = m, .n = n, .x = xf, .xq = s->xq, .xs = s->xs,
                  .logits = s->logits + (size_t)row0 * c->vocab};
    for (int i = 0; i < n; i++) {
        float *o = xf + (size_t)i * c->dim;
        rmsnorm(o, s->x + (size_t)(t0 + i) * c->dim, m->w.norm, c->dim, c->eps);
        if (m->w.head_quant != BV_HEAD_F16) s->xs[i] = act_quant(o, c->dim, pad, s->xq + (size_t)i * pad);
    }
    bv_pool_run(m->pool, head_task, &j, bv_pool_threads(m->pool) * 4);
}

/* ---- the forward pass over one chunk of n <= BV_MAX_BATCH tokens ------------------ */

/* The element-wise work between the matmuls runs per token; for a prefill
 * chunk the tokens are shared out over the pool (one task per thread), for a
 * single decode token it runs inline (bv_pool_run with one task). */
typedef enum {
    STAGE_ATTN_IN,   /* h = rmsnorm(x, attn_norm); quantize h */
    STAGE_ROPE,      /* q, k = rope(q, pos), rope(k, pos); cache[pos] = k, v (f16 or int8) */
    STAGE_O_IN,      /* h = rmsnorm(a, attn_sub_norm); quantize h */
    STAGE_FFN_IN,    /* x += o; h = rmsnorm(x, ffn_norm); quantize h */
    STAGE_DOWN_IN,   /* f = relu(g)^2 * u; h = rmsnorm(f, ffn_sub_norm); quantize h */
    STAGE_RESIDUAL,  /* x += d */
} stage_id;

typedef struct {
    bv_model *m;
    const bv_layer *L;
    const chunk *ch;
    int layer, n;
    stage_id stage;
} stage_job;

/* x[t] += d[t] for tokens [t0, t1) */
BV_FLOAT_CLONES static void add_rows(float *restrict x, const float *restrict d, int t0, int t1, int dim) {
    for (size_t i = (size_t)t0 * dim; i < (size_t)t1 * dim; i++) x[i] += d[i];
}

/* h = relu(h)^2 * u */
BV_FLOAT_CLONES static void relu2_mul(float *restrict h, const float *restrict u, int n) {
    for (int i = 0; i < n; i++) {
        /* relu by the sign bit (an integer select vectorizes; a float
         * compare-and-select does not under strict IEEE) */
        uint32_t bits;
        memcpy(&bits, &h[i], 4);
        bits &= ~(uint32_t)((int32_t)bits >> 31);
        float g;
        memcpy(&g, &bits, 4);
        h[i] = g * g * u[i];
    }
}

static void stage_task(void *ctx, int task, int n_tasks) {
    const stage_job *j = ctx;
    bv_model *m = j->m;
    const bv_config *c = &m->cfg;
    bv_state *s = &m->s;
    const bv_layer *L = j->L;
    int dim = c->dim, hd = c->head_dim, kv_dim = c->n_kv_heads * hd, ffn = c->ffn;
    int t0 = j->n * task / n_tasks, t1 = j->n * (task + 1) / n_tasks;
    switch (j->stage) {
    case STAGE_ATTN_IN:
        for (int t = t0; t < t1; t++) norm_quant(m, s, t, s->x + (size_t)t * dim, L->attn_norm, dim);
        break;
    case STAGE_ROPE:
        for (int t = t0; t < t1; t++) {
            bv_kv *kv = j->ch->kv[t];
            rope(s->q + (size_t)t * dim, c->n_heads, hd, s->rope_cs + (size_t)t * hd);
            rope(s->k + (size_t)t * kv_dim, c->n_kv_heads, hd, s->rope_cs + (size_t)t * hd);
            for (int h = 0; h < c->n_kv_heads; h++) { /* kv[t]: [layer][kv head][pos][hd] */
                size_t row = ((size_t)j->layer * c->n_kv_heads + h) * kv->n_ctx + j->ch->pos[t], at = row * hd;
                const float *kt = s->k + (size_t)t * kv_dim + (size_t)h * hd;
                const float *vt = s->v + (size_t)t * kv_dim + (size_t)h * hd;
                if (kv->quant == BV_KV_INT8) { /* reference: k, v = kv_quant(k), kv_quant(v) */
                    bv_kv_quant_row(kt, hd, kv->k8 + at, kv->ks + row);
                    bv_kv_quant_row(vt, hd, kv->v8 + at, kv->vs + row);
                } else {
                    bv_kern.f32_to_f16(kt, kv->k + at, hd);
                    bv_kern.f32_to_f16(vt, kv->v + at, hd);
                }
            }
        }
        break;
    case STAGE_O_IN:
        for (int t = t0; t < t1; t++) norm_quant(m, s, t, s->xb2 + (size_t)t * dim, L->attn_sub_norm, dim);
        break;
    case STAGE_RESIDUAL:
        add_rows(s->x, s->xb2, t0, t1, dim);
        break;
    case STAGE_FFN_IN:
        add_rows(s->x, s->xb2, t0, t1, dim);
        for (int t = t0; t < t1; t++) norm_quant(m, s, t, s->x + (size_t)t * dim, L->ffn_norm, dim);
        break;
    case STAGE_DOWN_IN:
        for (int t = t0; t < t1; t++) {
            float *h = s->hb + (size_t)t * ffn;
            relu2_mul(h, s->hb2 + (size_t)t * ffn, ffn);
            norm_quant(m, s, t, h, L->ffn_sub_norm, ffn);
        }
        break;
    }
}

static void stage(bv_model *m, const chunk *ch, int layer, stage_id id) {
    int n = ch->n;
    stage_job j = {m, &m->w.layers[layer], ch, layer, n, id};
    int threads = bv_pool_threads(m->pool);
    bv_pool_run(m->pool, stage_task, &j, n < threads ? n : threads);
}

static int forward_chunk(bv_model *m, const chunk *ch) {
    const bv_config *c = &m->cfg;
    bv_state *s = &m->s;
    int n = ch->n, dim = c->dim, hd = c->head_dim, kv_dim = c->n_kv_heads * hd, ffn = c->ffn;

    rope_angles(s, ch, hd);

    /* x = embed[tokens] */
    for (int t = 0; t < n; t++)
        bv_kern.f16_to_f32(m->w.embed + (size_t)ch->tokens[t] * dim, s->x + (size_t)t * dim, dim);

    for (int l = 0; l < c->n_layers; l++) {
        if (atomic_load_explicit(&m->cancel, memory_order_relaxed)) return BV_CANCELLED;
        bv_layer *L = &m->w.layers[l];

        /* q, k, v = h @ Wq.T, h @ Wk.T, h @ Wv.T  with h = rmsnorm(x, attn_norm) */
        stage(m, ch, l, STAGE_ATTN_IN);
        const bv_ternary *qkv[3] = {&L->lin[BV_Q], &L->lin[BV_K], &L->lin[BV_V]};
        float *qkv_out[3] = {s->q, s->k, s->v};
        const int qkv_ld[3] = {dim, kv_dim, kv_dim};
        matmul(m, qkv, 3, n, qkv_out, qkv_ld);
        lora_apply(m, &L->lora[BV_Q], s->xb, dim, n, s->q, dim);
        lora_apply(m, &L->lora[BV_K], s->xb, dim, n, s->k, kv_dim);
        lora_apply(m, &L->lora[BV_V], s->xb, dim, n, s->v, kv_dim);
        stage(m, ch, l, STAGE_ROPE);

        /* a = softmax(q k.T / sqrt(hd) + causal) v, per head (GQA: kv head = h / group) */
        attention(m, ch, l);

        /* x += rmsnorm(a, attn_sub_norm) @ Wo.T */
        stage(m, ch, l, STAGE_O_IN);
        const bv_ternary *o[1] = {&L->lin[BV_O]};
        matmul(m, o, 1, n, &s->xb2, &dim);
        lora_apply(m, &L->lora[BV_O], s->xb, dim, n, s->xb2, dim);

        /* g, u = h @ Wg.T, h @ Wu.T  with h = rmsnorm(x, ffn_norm) */
        stage(m, ch, l, STAGE_FFN_IN);
        const bv_ternary *gu[2] = {&L->lin[BV_GATE], &L->lin[BV_UP]};
        float *gu_out[2] = {s->hb, s->hb2};
        const int gu_ld[2] = {ffn, ffn};
        matmul(m, gu, 2, n, gu_out, gu_ld);
        lora_apply(m, &L->lora[BV_GATE], s->xb, dim, n, s->hb, ffn);
        lora_apply(m, &L->lora[BV_UP], s->xb, dim, n, s->hb2, ffn);

        /* x += rmsnorm(relu(g)^2 * u, ffn_sub_norm) @ Wd.T */
        stage(m, ch, l, STAGE_DOWN_IN);
        const bv_ternary *d[1] = {&L->lin[BV_DOWN]};
        matmul(m, d, 1, n, &s->xb2, &dim);
        lora_apply(m, &L->lora[BV_DOWN], s->xb, ffn, n, s->xb2, dim);
        stage(m, ch, l, STAGE_RESIDUAL);
    }
    return BV_OK;
}

/* logits has room for `rows` rows of the vocabulary (grown, never shrunk). */
static int reserve_logits(bv_model *m, int rows) {
    bv_state *s = &m->s;
    if (rows <= s->logits_cap) return BV_OK;
    float *bigger = NULL;
    if (posix_memalign((void **)&bigger, 64, sizeof(float) * (size_t)rows * m->cfg.vocab) != 0) return BV_ERR_NOMEM;
    free(s->logits);
    s->logits = bigger;
    s->logits_cap = rows;
    return BV_OK;
}

static void kv_written(bv_kv *kv, int n_cached) {
    kv->n_cached = n_cached;
    if (n_cached > kv->n_touched) kv->n_touched = n_cached;
}

int bv_model_eval(bv_model *m, bv_kv *kv, const int32_t *tokens, int n, int n_past, int all_logits) {
    const bv_config *c = &m->cfg;
    if (n <= 0 || n_past < 0 || n_past > kv->n_cached || n > kv->n_ctx - n_past || kv->n_ctx != m->s.n_ctx)
        return BV_ERR_ARG;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab) return BV_ERR_ARG;
    int rows = all_logits ? n : 1;
    if (reserve_logits(m, rows) != BV_OK) return BV_ERR_NOMEM;
    m->eval_calls++;
    kv->n_cached = n_past; /* truncate: what follows n_past is overwritten */
    int rc = BV_OK;
    for (int done = 0; done < n && rc == BV_OK;) {
        chunk ch = {.n = n - done < BV_MAX_BATCH ? n - done : BV_MAX_BATCH, .tokens = tokens + done};
        for (int t = 0; t < ch.n; t++) {
            ch.kv[t] = kv;
            ch.pos[t] = n_past + done + t;
        }
        rc = forward_chunk(m, &ch);
        if (rc != BV_OK) break;
        /* logits = rmsnorm(x, norm) @ head.T (last token, or every token) */
        if (all_logits)
            final_logits(m, 0, ch.n, done);
        else if (done + ch.n == n)
            final_logits(m, ch.n - 1, 1, 0);
        done += ch.n;
        kv_written(kv, n_past + done);
        m->tokens_evaluated += (uint64_t)ch.n;
    }
    if (rc == BV_CANCELLED) {
        atomic_store(&m->cancel, 0);
        kv->n_cached = n_past; /* a partial chunk leaves nothing usable beyond the prefix */
        return BV_CANCELLED;
    }
    m->s.n_logits = rows;
    return rc;
}

int bv_model_eval_batch(bv_model *m, bv_kv *const *kv, const int32_t *tokens, int n) {
    const bv_config *c = &m->cfg;
    if (n <= 0 || n > BV_MAX_BATCH) return BV_ERR_ARG;
    chunk ch = {.n = n, .tokens = tokens};
    for (int t = 0; t < n; t++) {
        /* two tokens of one cache would both land on its next position */
        for (int u = 0; u < t; u++)
            if (kv[u] == kv[t]) return BV_ERR_ARG;
        if (tokens[t] < 0 || tokens[t] >= c->vocab || kv[t]->n_cached >= kv[t]->n_ctx || kv[t]->n_ctx != m->s.n_ctx)
            return BV_ERR_ARG;
        ch.kv[t] = kv[t];
        ch.pos[t] = kv[t]->n_cached;
    }
    if (reserve_logits(m, n) != BV_OK) return BV_ERR_NOMEM;
    m->eval_calls++;
    if (forward_chunk(m, &ch) == BV_CANCELLED) {
        atomic_store(&m->cancel, 0);
        return BV_CANCELLED; /* the positions written are beyond each n_cached: unused */
    }
    final_logits(m, 0, n, 0);
    for (int t = 0; t < n; t++) kv_written(kv[t], ch.pos[t] + 1);
    m->tokens_evaluated += (uint64_t)n;
    m->s.n_logits = n;
    return BV_OK;
}

/* Bytes of one factor in `quant` storage (codes or floats; steps apart). */
static size_t lora_mat_bytes(int quant, int rows, int cols) {
    size_t row = quant == BV_LORA_INT8   ? (size_t)cols
                 : quant == BV_LORA_INT4 ? (size_t)BV_LORA_I4_ROW_BYTES(cols)
                                         : sizeof(float) * (size_t)cols;
    return row * (size_t)rows;
}

/* Copy one factor into `w` (owned). Returns 0, or -1 out of memory. */
static int lora_mat_copy(bv_lora_mat *w, int quant, const void *data, const float *step, int rows, int cols) {
    size_t bytes = lora_mat_bytes(quant, rows, cols);
    w->data = malloc(bytes);
    w->step = quant == BV_LORA_F32 ? NULL : malloc(sizeof(float) * (size_t)rows);
    w->rows = rows;
    w->cols = cols;
    if (!w->data || (quant != BV_LORA_F32 && !w->step)) return -1;
    memcpy(w->data, data, bytes);
    if (w->step) memcpy(w->step, step, sizeof(float) * (size_t)rows);
    return 0;
}

static void lora_free(bv_lora *lo) {
    free(lo->a.data);
    free(lo->a.step);
    free(lo->b.data);
    free(lo->b.step);
    memset(lo, 0, sizeof *lo);
}

int bv_model_set_lora(bv_model *m, int layer, int which, int quant, const void *a, const float *a_step,
                      const void *b, const float *b_step, int rank, float scale) {
    const bv_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layers || which < 0 || which >= BV_N_LINEARS || rank <= 0 || rank > 4096 ||
        quant < BV_LORA_F32 || quant > BV_LORA_INT4 || (quant != BV_LORA_F32 && (!a_step || !b_step)))
        return BV_ERR_ARG;
    bv_layer *L = &m->w.layers[layer];
    int in = L->lin[which].cols, out = L->lin[which].rows;
    bv_lora lo = {.rank = rank, .quant = quant, .scale = scale};
    /* lora_tmp holds one token's rank-sized intermediate; grow to the largest rank */
    int max_rank = rank;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++)
            if (m->w.layers[l].lora[j].rank > max_rank) max_rank = m->w.layers[l].lora[j].rank;
    float *tmp = malloc(sizeof(float) * (size_t)max_rank);
    if (!tmp || lora_mat_copy(&lo.a, quant, a, a_step, rank, in) || lora_mat_copy(&lo.b, quant, b, b_step, out, rank)) {
        free(tmp);
        lora_free(&lo);
        return BV_ERR_NOMEM;
    }
    lora_free(&L->lora[which]);
    L->lora[which] = lo;
    free(m->s.lora_tmp);
    m->s.lora_tmp = tmp;
    return BV_OK;
}

void bv_model_clear_lora(bv_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++) lora_free(&m->w.layers[l].lora[j]);
}

size_t bv_model_lora_bytes(const bv_model *m) {
    size_t total = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++) {
            const bv_lora *lo = &m->w.layers[l].lora[j];
            if (lo->rank == 0) continue;
            total += lora_mat_bytes(lo->quant, lo->a.rows, lo->a.cols) + lora_mat_bytes(lo->quant, lo->b.rows, lo->b.cols);
            if (lo->quant != BV_LORA_F32) total += sizeof(float) * (size_t)(lo->a.rows + lo->b.rows);
        }
    return total;
}
