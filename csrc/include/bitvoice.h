/* bitvoice.h - the C ternary engine: a BitNet b1.58 model, its KV cache and
 * its sampler. Names are bv_<object>_<action>; every *_init / *_load has a
 * *_free. Errors are returned as a negative code plus a message in `err`.
 */
#ifndef BITVOICE_H
#define BITVOICE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bv_format.h"
#include "bv_threadpool.h"

#define BV_MAX_BATCH 64   /* prefill processes prompts in chunks of this many tokens */
#define BV_ATTN_SPAN 64   /* positions per attention work unit (forward.c) ... */
#define BV_ATTN_MAX_SPANS 8 /* ... up to this many units per token and KV head */
#define BV_ERR_LEN 256

enum { BV_OK = 0, BV_ERR_IO = -1, BV_ERR_FORMAT = -2, BV_ERR_NOMEM = -3, BV_ERR_ARG = -4,
       BV_CANCELLED = 1 };

enum bv_head_quant { BV_HEAD_F16 = 0, BV_HEAD_INT8 = 1, BV_HEAD_INT4 = 2 };
/* KV cache storage: f16 rows, or per (position, KV head) row int8 codes and
 * one float step (absmax / 127, round to nearest even; bv_kv_quant_row) */
enum bv_kv_quant { BV_KV_F16 = 0, BV_KV_INT8 = 1 };
/* in-memory ternary layout: auto = T1 when the kernel path prefers it */
enum bv_layout { BV_LAYOUT_AUTO = 0, BV_LAYOUT_2BIT = 1, BV_LAYOUT_T1 = 2 };

typedef struct {
    int dim;        /* hidden size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;   /* dim / n_heads */
    int ffn;        /* intermediate size */
    int vocab;
    int max_ctx;    /* max_position_embeddings */
    float eps;      /* rms_norm_eps */
    float rope_theta;
} bv_config;

/* Row width of the int32 matmul scratch (bv_state.acc): the widest fused
 * matmul, gate+up (2 * ffn) or q+k+v (dim + 2 * kv_dim), or o/down (dim). */
static inline int bv_acc_width(const bv_config *c) {
    int qkv = c->dim + 2 * c->n_kv_heads * c->head_dim, gu = 2 * c->ffn;
    return qkv > gu ? qkv : gu;
}

typedef struct {
    const uint8_t *data; /* 2-bit: [rows][nb * BV_BLOCK_BYTES]; T1: [rows][nb * BV_T1_BLOCK_BYTES] */
    uint8_t *owned;      /* the T1 copy (malloc'd) when repacked, else NULL (data is in the map) */
    int rows, cols, nb;  /* logical shape; nb = blocks per row of the layout in use */
    int t1;              /* 1: T1 layout (1.6 bits/weight), 0: the file's 2-bit layout */
    float scale;         /* W = T * scale */
} bv_ternary;

/* storage of LoRA factors (lora_quant): float32, or symmetric per-row integer
 * codes with one float step per row (value = code * step) */
enum bv_lora_quant { BV_LORA_F32 = 0, BV_LORA_INT8 = 1, BV_LORA_INT4 = 2 };

typedef struct {          /* one LoRA factor, rows x cols, owned */
    void *data;           /* f32: float [rows][cols]; int8: int8 [rows][cols] (codes -127..127);
                             int4: uint8 [rows][BV_LORA_I4_ROW_BYTES(cols)] (codes -7..7) */
    float *step;          /* [rows] per-row step (int8 / int4); NULL for f32 */
    int rows, cols;
} bv_lora_mat;

typedef struct {          /* a LoRA delta on one linear: y += scale * B (A x) */
    bv_lora_mat a;        /* [rank][in] */
    bv_lora_mat b;        /* [out][rank] */
    int rank;             /* 0 = none */
    int quant;            /* enum bv_lora_quant, of both factors */
    float scale;
} bv_lora;

enum { BV_Q, BV_K, BV_V, BV_O, BV_GATE, BV_UP, BV_DOWN, BV_N_LINEARS };

typedef struct {
    const float *attn_norm;     /* [dim]  input_layernorm */
    const float *ffn_norm;      /* [dim]  post_attention_layernorm */
    const float *attn_sub_norm; /* [dim]  before o_proj */
    const float *ffn_sub_norm;  /* [ffn]  before down_proj */
    bv_ternary lin[BV_N_LINEARS];
    bv_lora lora[BV_N_LINEARS];  /* rank 0 = none */
} bv_layer;

typedef struct {
    const uint16_t *embed;   /* [vocab][dim] f16, token embeddings */
    const uint16_t *head;    /* [vocab][dim] f16, LM head (== embed when tied) */
    const float *norm;       /* [dim] final norm */
    bv_layer *layers;        /* [n_layers] */
    /* quantized LM head (unembed_quant), owned, NULL when f16 */
    void *head_q;            /* int8: [vocab][nb*128]; int4: [vocab][nb*64] */
    float *head_q_scale;     /* [vocab] */
    int head_quant;          /* enum bv_head_quant */
} bv_weights;

typedef struct {            /* scratch, allocated once at load for BV_MAX_BATCH tokens */
    float *x;        /* [B][dim]   residual stream */
    float *xb;       /* [B][max(dim, ffn)] normalized input of a linear */
    float *xb2;      /* [B][max(q_dim, dim)] attention output */
    int8_t *xq;      /* [B][pad(max(dim, ffn))] int8 activations */
    float *xs;       /* [B] activation scale: x ~ xq * xs */
    int32_t *acc;    /* [B][bv_acc_width] int32 matmul results */
    float *q;        /* [B][q_dim] */
    float *k;        /* [B][kv_dim] */
    float *v;        /* [B][kv_dim] */
    float *hb;       /* [B][ffn] */
    float *hb2;      /* [B][ffn] */
    float *attn_part;/* [B][n_kv_heads][attn_max_spans][group * (head_dim + 2)] softmax partials */
    int attn_max_spans;
    float *lora_tmp; /* [max lora rank] one token's A x */
    float *logits;   /* [n_logits][vocab] */
    int n_logits;    /* rows valid in logits */
    float *rope_inv; /* [head_dim/2] inverse frequencies */
    float *rope_cs;  /* [B][head_dim] cos, then sin, of each chunk token's position angles */
    int n_ctx;       /* context length: positions a KV cache of this model holds */
    int logits_cap;  /* rows allocated in logits */
    void *sample_scratch; /* sampler.c's per-call buffers ([vocab] candidates + [vocab] flags), made on first use */
} bv_state;

/* One sequence's KV cache (one conversation's): the keys and values of the
 * positions it has run, and its sampler state, so that sequences sharing a
 * model never disturb each other. Sized for the model's whole context but
 * allocated lazily (fresh zero pages from the kernel), so memory counts only
 * for positions written: n_touched positions, bv_kv_bytes() bytes. */
typedef struct {
    int quant;      /* enum bv_kv_quant: which of the two layouts below is allocated (the other is NULL) */
    uint16_t *k;    /* f16: [n_layers][n_kv_heads][n_ctx][head_dim]: a KV head's rows are contiguous */
    uint16_t *v;    /* f16: [n_layers][n_kv_heads][n_ctx][head_dim] */
    int8_t *k8;     /* int8: [n_layers][n_kv_heads][n_ctx][head_dim] codes */
    int8_t *v8;     /* int8: [n_layers][n_kv_heads][n_ctx][head_dim] codes */
    float *ks;      /* int8: [n_layers][n_kv_heads][n_ctx] step of each k8 row (k = k8 * ks) */
    float *vs;      /* int8: [n_layers][n_kv_heads][n_ctx] step of each v8 row */
    int n_ctx;      /* positions it can hold (the model's n_ctx) */
    int n_cached;   /* positions valid */
    int n_touched;  /* positions ever written (high-water mark): the pages it holds */
    size_t pos_bytes; /* bytes one position takes in k and v together (int8: codes and steps) */
    uint64_t rng;   /* sampler state (xorshift64*) of this sequence */
} bv_kv;

typedef struct {
    bv_config cfg;
    bv_weights w;
    bv_state s;
    bv_kv *kv;           /* the model's own cache: used when a call names none */
    bv_pool *pool;
    const uint8_t *map;  /* the mmapped model.bvm */
    size_t map_size;
    atomic_int cancel;
    uint64_t tokens_evaluated;
    uint64_t eval_calls;
    int t1;              /* the layer matrices are in the T1 layout */
    int kv_quant;        /* enum bv_kv_quant of the caches bv_kv_init makes */
} bv_model;

/* Load model.bvm (mmapped, read-only). n_ctx 0 = cfg.max_ctx. head_quant one of
 * enum bv_head_quant, layout one of enum bv_layout, kv_quant one of enum
 * bv_kv_quant (the storage of every cache of this model). On error returns
 * NULL with a message in err. */
bv_model *bv_model_load(const char *path, int n_threads, int n_ctx, int head_quant, int layout, int kv_quant,
                        char err[BV_ERR_LEN]);
void bv_model_free(bv_model *m);

/* A new, empty KV cache for sequences of model m (its own memory: it may
 * outlive m). NULL when out of memory. */
bv_kv *bv_kv_init(const bv_model *m);
void bv_kv_free(bv_kv *kv);
/* Bytes the cache holds: every position ever written (n_touched), k and v. */
size_t bv_kv_bytes(const bv_kv *kv);
/* The int8 cache's row quantization, the one every kernel path uses:
 * step = max|x| / 127, code = round-to-nearest-even(x * 127 / max|x|) in
 * -127..127 (all zero, step 0, for a zero row). Mirrors reference.kv_quant. */
void bv_kv_quant_row(const float *x, int n, int8_t *code, float *step);

/* Run `n` tokens at positions n_past.. of cache kv (first truncated to
 * n_past). Keeps logits of the last token, or of all tokens if all_logits.
 * Returns BV_OK, BV_CANCELLED (kv holds n_past tokens) or BV_ERR_ARG. */
int bv_model_eval(bv_model *m, bv_kv *kv, const int32_t *tokens, int n, int n_past, int all_logits);

/* Batched decode: token i runs at the end of cache kv[i] (position
 * kv[i]->n_cached), all n (<= BV_MAX_BATCH, distinct caches) in one pass over
 * the weights. Logits: one row per token, in order. Each row's result has the
 * same bits as bv_model_eval of that token alone on its cache. Returns BV_OK,
 * BV_CANCELLED (no cache changed) or BV_ERR_ARG. */
int bv_model_eval_batch(bv_model *m, bv_kv *const *kv, const int32_t *tokens, int n);

/* Attach a LoRA delta to layer `layer`, linear `which` (BV_Q..BV_DOWN), replacing
 * any there: y += scale * B (A x), A [rank][in], B [out][rank]. `quant` (enum
 * bv_lora_quant) is the storage of a and b as bv_lora_mat describes it;
 * a_step / b_step are their per-row steps (ignored for BV_LORA_F32). Copies
 * everything. Returns BV_OK, BV_ERR_ARG or BV_ERR_NOMEM. */
int bv_model_set_lora(bv_model *m, int layer, int which, int quant, const void *a, const float *a_step,
                      const void *b, const float *b_step, int rank, float scale);
void bv_model_clear_lora(bv_model *m);
/* Bytes the attached LoRA factors hold in memory (codes or floats, and steps). */
size_t bv_model_lora_bytes(const bv_model *m);

typedef struct {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float repetition_penalty; /* 1 = off */
    const int32_t *history;   /* previous tokens, for the penalty */
    int n_history;
    int lookback;             /* penalise the last `lookback` tokens of history */
} bv_sampling;

/* Pick the next token from logits[vocab] (modified in place by the penalty),
 * drawing from the generator state *rng (a bv_kv's: one stream per sequence). */
int bv_sample(bv_model *m, float *logits, const bv_sampling *p, uint64_t *rng);

#endif
