/* model.c - load a model.bvm bundle: map it, check every header and table
 * field against the file before any pointer is formed (a truncated or corrupt
 * file is an error, never an out-of-bounds read), bind the weights, allocate
 * the run state and KV cache once, and quantize the LM head if asked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitvoice.h"
#include "bv_kernels.h"


static const char *LINEAR_NAMES[BV_N_LINEARS] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};

static size_t dtype_bytes(uint32_t dtype, uint32_t rows, uint32_t cols) {
    switch (dtype) {
    case BV_DTYPE_F32: return (size_t)rows * cols * 4;
    case BV_DTYPE_F16: return (size_t)rows * cols * 2;
    case BV_DTYPE_TERNARY: return (size_t)rows * (size_t)bv_blocks((int)cols) * BV_BLOCK_BYTES;
    default: return 0;
    }
}

static const bv_tensor_entry *find(const bv_tensor_entry *tab, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (strncmp(tab[i].name, name, BV_NAME_LEN) == 0) return &tab[i];
    return NULL;
}

/* Look a tensor up and check its dtype and shape; NULL + err on mismatch. */
static const bv_tensor_entry *expect(const bv_tensor_entry *tab, uint32_t n, const char *name,
                                     uint32_t dtype, uint32_t rows, uint32_t cols, char *err) {
    const bv_tensor_entry *e = find(tab, n, name);
    if (!e) { snprintf(err, BV_ERR_LEN, "bundle lacks tensor %s", name); return NULL; }
    if (e->dtype != dtype || e->rows != rows || e->cols != cols) {
        snprintf(err, BV_ERR_LEN, "tensor %s has dtype %u shape %ux%u, expected dtype %u shape %ux%u",
                 name, e->dtype, e->rows, e->cols, dtype, rows, cols);
        return NULL;
    }
    return e;
}

/* Zeroed without touching: large requests get fresh zero pages from the
 * kernel (glibc calloc mmaps them), so memory counts only once written. For
 * the KV cache, sized for the whole context but filled a token at a time
 * (16-byte aligned; the kernels read it with unaligned loads). */
static void *lazy_calloc(size_t n, size_t size, int *ok) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) *ok = 0;
    return p;
}

static void *xcalloc(size_t n, size_t size, int *ok) {
    void *p = NULL;
    size_t bytes = n * size;
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, bytes) != 0) { *ok = 0; return NULL; }
    memset(p, 0, bytes);
    return p;
}

/* Memory for a large stream that decode reads once per token (the T1
 * weights, the quantized head): 2 MB aligned and marked for transparent huge
 * pages, so the stream costs one TLB entry per 2 MB instead of per 4 KB
 * (measured on the 2B decode stream, kernels alone at 2 threads: 2-bit
 * 29.7 -> 23.6 ms/token, T1 26.7 -> 23.6). Without THP it is plain memory.
 * Not zeroed: the callers write every byte, from their worker threads, so the
 * kernel's page clearing is spread over the cores instead of one memset. */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)
static void *alloc_huge(size_t bytes, int *ok) {
    void *p = NULL;
    bytes = (bytes + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if (posix_memalign(&p, HUGE_PAGE_BYTES, bytes) != 0) { *ok = 0; return NULL; }
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); /* advice only: failure leaves 4 KB pages */
#endif
    return p;
}

/* ---- LM head quantization (unembed_quant) ------------------------------- */

/* nearbyintf without the libm call (|v| < 2^22): add and remove 1.5 * 2^23 */
static inline float round_even(float v) { return (v + 12582912.0f) - 12582912.0f; }
typedef struct { bv_model *m; } head_job;

static void quantize_head_rows(void *ctx, int task, int n_tasks) {
    bv_model *m = ((head_job *)ctx)->m;
    int vocab = m->cfg.vocab, dim = m->cfg.dim, nb = bv_blocks(dim);
    int r0 = (int)((long)vocab * task / n_tasks), r1 = (int)((long)vocab * (task + 1) / n_tasks);
    float *row = malloc(sizeof(float) * (size_t)dim);
    if (!row) return; /* leaves zeros; checked by caller through scale == 0 only in theory */
    for (int r = r0; r < r1; r++) {
        bv_kern.f16_to_f32(m->w.head + (size_t)r * dim, row, dim);
        float amax = 0.0f;
        for (int k = 0; k < dim; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
        float qmax = m->w.head_quant == BV_HEAD_INT8 ? 127.0f : 7.0f;
        float scale = amax > 0 ? amax / qmax : 1.0f;
        m->w.head_q_scale[r] = scale;
        if (m->w.head_quant == BV_HEAD_INT8) {
            int8_t *q = (int8_t *)m->w.head_q + (size_t)r * nb * BV_QK;
            for (int k = 0; k < dim; k++) q[k] = (int8_t)round_even(row[k] / scale);
            memset(q + dim, 0, (size_t)(nb * BV_QK - dim)); /* padding (alloc_huge does not zero) */
        } else {
            uint8_t *q = (uint8_t *)m->w.head_q + (size_t)r * nb * BV_I4_GROUP_BYTES;
            for (int k = 0; k < nb * BV_QK; k++) {
                int v = k < dim ? (int)round_even(row[k] / scale) : 0;
                int g = k / BV_QK, j = k % BV_QK;
                uint8_t code = (uint8_t)(v + 8);
                uint8_t *byte = q + (size_t)g * BV_I4_GROUP_BYTES + (j & 63);
                *byte = j < 64 ? (uint8_t)((*byte & 0xf0) | code) : (uint8_t)((*byte & 0x0f) | code << 4);
            }
        }
    }
    free(row);
}

/* ---- T1 repacking (bv_format.h) ------------------------------------------ */
typedef struct { bv_ternary *w; uint8_t *scratch; int stride; } repack_job; /* stride: bytes of scratch per task */

static void repack_t1_rows(void *ctx, int task, int n_tasks) {
    bv_ternary *w = ((repack_job *)ctx)->w;
    int r0 = (int)((long)w->rows * task / n_tasks), r1 = (int)((long)w->rows * (task + 1) / n_tasks);
    int nb = bv_blocks(w->cols), nb1 = bv_t1_blocks(w->cols);
    int ncodes = nb1 * BV_T1_QK > nb * BV_QK ? nb1 * BV_T1_QK : nb * BV_QK;
    uint8_t *codes = ((repack_job *)ctx)->scratch + (size_t)task * ((repack_job *)ctx)->stride;
    for (int r = r0; r < r1; r++) {
        const uint8_t *src = w->data + (size_t)r * nb * BV_BLOCK_BYTES;
        uint8_t *dst = w->owned + (size_t)r * nb1 * BV_T1_BLOCK_BYTES;
        /* 2-bit row -> one code (w + 1) per column; padding columns are code 1
         * (weight 0). Plain loops over bytes so the compiler vectorizes them:
         * this runs over every weight at load (a per-column loop took ~3.5 s
         * on the 2B model, past the 2 s load budget). */
        for (int b = 0; b < nb; b++)
            for (int q = 0; q < 4; q++)
                for (int j = 0; j < 32; j++)
                    codes[b * BV_QK + q * 32 + j] = (uint8_t)((src[b * BV_BLOCK_BYTES + j] >> (2 * q)) & 3);
        for (int k = w->cols; k < ncodes; k++) codes[k] = 1;
        for (int b1 = 0; b1 < nb1; b1++) {
            const uint8_t *c = codes + (size_t)b1 * BV_T1_QK;
            for (int j = 0; j < BV_T1_BLOCK_BYTES; j++) {
                uint16_t v = (uint16_t)(c[j] * 81 + c[64 + j] * 27 + c[128 + j] * 9 + c[192 + j] * 3 + c[256 + j]);
                dst[b1 * BV_T1_BLOCK_BYTES + j] = (uint8_t)((v * 256u + 242u) / 243u); /* ceil(v*256/243) */
            }
        }
    }
}

/* drop the file pages of [p, p + n) from this process (they are re-read if touched) */
static void drop_pages(const void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1), hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* All T1 matrices share one huge-page arena, owned by layer 0's first linear
 * (the other `owned` stay NULL; bv_model_free frees each non-NULL one). */
static int repack_model_t1(bv_model *m) {
    size_t total = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++) {
            const bv_ternary *w = &m->w.layers[l].lin[j];
            total += (size_t)w->rows * bv_t1_blocks(w->cols) * BV_T1_BLOCK_BYTES; /* 64-multiple */
        }
    int ok = 1, widest = 0, tasks = bv_pool_threads(m->pool);
    for (int j = 0; j < BV_N_LINEARS; j++) {
        int cols = m->w.layers[0].lin[j].cols, n = bv_t1_pad_cols(cols) + bv_pad_cols(cols);
        widest = n > widest ? n : widest;
    }
    uint8_t *scratch = malloc((size_t)tasks * widest);
    uint8_t *arena = scratch ? alloc_huge(total, &ok) : NULL;
    if (!arena) { free(scratch); return BV_ERR_NOMEM; }
    m->w.layers[0].lin[0].owned = arena;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++) {
            bv_ternary *w = &m->w.layers[l].lin[j];
            size_t bytes = (size_t)w->rows * bv_t1_blocks(w->cols) * BV_T1_BLOCK_BYTES;
            w->owned = arena; /* repack_t1_rows writes here; reset below */
            arena += bytes;
            repack_job job = {w, scratch, widest};
            bv_pool_run(m->pool, repack_t1_rows, &job, tasks);
            drop_pages(w->data, (size_t)w->rows * w->nb * BV_BLOCK_BYTES);
            w->data = w->owned;
            if (l || j) w->owned = NULL; /* in the arena, freed with layer 0's */
            w->nb = bv_t1_blocks(w->cols);
            w->t1 = 1;
        }
    free(scratch);
    m->t1 = 1;
    return BV_OK;
}

/* The 2-bit layout, copied out of the file map into one huge-page arena:
 * decode streams every weight once per token, and 4 KB file pages cost TLB
 * misses on that stream (measured: 12-20% slower). The file pages are dropped
 * after the copy, so resident memory does not grow. */
typedef struct { const bv_ternary *w; uint8_t *dst; } copy_job;

static void copy_rows(void *ctx, int task, int n_tasks) {
    const copy_job *j = ctx;
    size_t row = (size_t)j->w->nb * BV_BLOCK_BYTES, rows = (size_t)j->w->rows;
    size_t r0 = rows * task / n_tasks, r1 = rows * (task + 1) / n_tasks;
    memcpy(j->dst + r0 * row, j->w->data + r0 * row, (r1 - r0) * row);
}

static int copy_model_2bit(bv_model *m) {
    size_t total = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++) {
            const bv_ternary *w = &m->w.layers[l].lin[j];
            total += (size_t)w->rows * w->nb * BV_BLOCK_BYTES; /* 32-byte multiple */
        }
    int ok = 1;
    uint8_t *arena = alloc_huge(total, &ok);
    if (!arena) return BV_ERR_NOMEM;
    m->w.layers[0].lin[0].owned = arena; /* freed with layer 0's first linear */
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < BV_N_LINEARS; j++) {
            bv_ternary *w = &m->w.layers[l].lin[j];
            size_t bytes = (size_t)w->rows * w->nb * BV_BLOCK_BYTES;
            copy_job job = {w, arena};
            bv_pool_run(m->pool, copy_rows, &job, bv_pool_threads(m->pool));
            drop_pages(w->data, bytes);
            w->data = arena;
            arena += bytes;
        }
    return BV_OK;
}

/* ---- bv_model_load, in its steps ----------------------------------------------
 * Each step returns BV_OK or an error code with a message in err; the caller
 * frees the half-built model (bv_model_free takes any partial state). */
#define ERR(code, ...) return (snprintf(err, BV_ERR_LEN, __VA_ARGS__), (code))

/* Map the file read-only (m->map, m->map_size); the fd is not kept. */
static int map_file(bv_model *m, const char *path, char *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) ERR(BV_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    int rc = BV_OK;
    if (fstat(fd, &st) != 0) {
        snprintf(err, BV_ERR_LEN, "cannot stat %s: %s", path, strerror(errno));
        rc = BV_ERR_IO;
    } else if ((size_t)st.st_size < sizeof(bv_file_header)) {
        snprintf(err, BV_ERR_LEN, "%s is truncated (%zu bytes)", path, (size_t)st.st_size);
        rc = BV_ERR_FORMAT;
    } else {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            snprintf(err, BV_ERR_LEN, "cannot map %s: %s", path, strerror(errno));
            rc = BV_ERR_IO;
        } else {
            m->map = map;
            m->map_size = (size_t)st.st_size;
        }
    }
    close(fd);
    return rc;
}

/* Header checks: magic, version, sizes and shapes the engine supports. */
static int check_header(const bv_model *m, const char *path, bv_file_header *h, char *err) {
    size_t size = m->map_size;
    memcpy(h, m->map, sizeof *h);
    if (h->magic != BV_MAGIC) ERR(BV_ERR_FORMAT, "%s is not a bitvoice model (bad magic)", path);
    if (h->version != BV_VERSION)
        ERR(BV_ERR_FORMAT, "%s has format version %u; this engine reads version %u", path, h->version, BV_VERSION);
    if (h->header_size != sizeof *h) ERR(BV_ERR_FORMAT, "bad header size %u", h->header_size);
    if (h->file_size != size)
        ERR(BV_ERR_FORMAT, "%s is truncated or padded: header says %llu bytes, file has %zu", path,
            (unsigned long long)h->file_size, size);
    if (h->n_tensors == 0 || h->n_tensors > 100000) ERR(BV_ERR_FORMAT, "bad tensor count %u", h->n_tensors);
    if (sizeof *h + (size_t)h->n_tensors * sizeof(bv_tensor_entry) > size)
        ERR(BV_ERR_FORMAT, "tensor table runs past the end of the file");
    if (!h->hidden || !h->n_layers || !h->n_heads || !h->n_kv_heads || !h->ffn || !h->vocab || !h->max_ctx ||
        !h->head_dim || h->hidden > 65536 || h->n_layers > 512 || h->ffn > 262144 || h->vocab > (1u << 20) ||
        h->max_ctx > (1u << 20) || h->n_heads % h->n_kv_heads || h->head_dim % 2 ||
        h->n_heads * h->head_dim != h->hidden || !(h->rope_theta > 0) || !(h->rms_eps > 0) ||
        !isfinite(h->rope_theta))
        ERR(BV_ERR_FORMAT, "unsupported shapes in header (hidden %u, layers %u, heads %u/%u, head_dim %u)",
            h->hidden, h->n_layers, h->n_heads, h->n_kv_heads, h->head_dim);
    return BV_OK;
}

/* The tensor table copied out of the map (alignment), every entry's dtype,
 * size and range checked against the file. NULL + err on failure. */
static bv_tensor_entry *read_table(const bv_model *m, const bv_file_header *h, char *err) {
    bv_tensor_entry *tab = malloc(sizeof(bv_tensor_entry) * h->n_tensors);
    if (!tab) { snprintf(err, BV_ERR_LEN, "out of memory"); return NULL; }
    memcpy(tab, m->map + sizeof *h, sizeof(bv_tensor_entry) * h->n_tensors);
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        bv_tensor_entry *e = &tab[i];
        e->name[BV_NAME_LEN - 1] = 0;
        size_t want = dtype_bytes(e->dtype, e->rows, e->cols);
        if (e->dtype >= BV_DTYPE_COUNT || want == 0 || e->nbytes != want || e->offset % BV_ALIGN ||
            e->offset > m->map_size || e->nbytes > m->map_size - e->offset) {
            snprintf(err, BV_ERR_LEN, "tensor %u (%.47s) is corrupt or runs past the end of the file", i, e->name);
            free(tab);
            return NULL;
        }
    }
    return tab;
}

/* A pointer into the map for a checked tensor; NULL + err on a mismatch. */
static const void *bind(const bv_model *m, const bv_tensor_entry *tab, const bv_file_header *h, const char *name,
                        uint32_t dtype, uint32_t rows, uint32_t cols, const bv_tensor_entry **found, char *err) {
    const bv_tensor_entry *e = expect(tab, h->n_tensors, name, dtype, rows, cols, err);
    if (found) *found = e;
    return e ? m->map + e->offset : NULL;
}

/* The seven ternary linears of layer l. */
static int bind_linears(bv_model *m, const bv_tensor_entry *tab, const bv_file_header *h, int l, char *err) {
    const bv_config *c = &m->cfg;
    int kv_dim = c->n_kv_heads * c->head_dim;
    const int rows[BV_N_LINEARS] = {c->dim, kv_dim, kv_dim, c->dim, c->ffn, c->ffn, c->dim};
    const int cols[BV_N_LINEARS] = {c->dim, c->dim, c->dim, c->dim, c->dim, c->dim, c->ffn};
    char name[BV_NAME_LEN];
    for (int j = 0; j < BV_N_LINEARS; j++) {
        bv_ternary *lin = &m->w.layers[l].lin[j];
        const bv_tensor_entry *e;
        snprintf(name, sizeof name, "layers.%d.%s", l, LINEAR_NAMES[j]);
        lin->data = bind(m, tab, h, name, BV_DTYPE_TERNARY, (uint32_t)rows[j], (uint32_t)cols[j], &e, err);
        if (!lin->data) return BV_ERR_FORMAT;
        if (!(e->scale > 0) || !isfinite(e->scale)) ERR(BV_ERR_FORMAT, "tensor %s has an invalid scale", name);
        lin->rows = rows[j]; lin->cols = cols[j]; lin->nb = bv_blocks(cols[j]); lin->scale = e->scale;
    }
    return BV_OK;
}

/* Weight binding: the config from the header, then every tensor (pointers
 * into the map; the linears are copied or repacked later, by set_layout). */
static int bind_weights(bv_model *m, const bv_file_header *h, const bv_tensor_entry *tab, char *err) {
    bv_config *c = &m->cfg;
    c->dim = (int)h->hidden; c->n_layers = (int)h->n_layers; c->n_heads = (int)h->n_heads;
    c->n_kv_heads = (int)h->n_kv_heads; c->head_dim = (int)h->head_dim; c->ffn = (int)h->ffn;
    c->vocab = (int)h->vocab; c->max_ctx = (int)h->max_ctx; c->eps = h->rms_eps; c->rope_theta = h->rope_theta;
    if (!(m->w.embed = bind(m, tab, h, "embed", BV_DTYPE_F16, h->vocab, h->hidden, NULL, err)) ||
        !(m->w.norm = bind(m, tab, h, "norm", BV_DTYPE_F32, 1, h->hidden, NULL, err)))
        return BV_ERR_FORMAT;
    m->w.head = m->w.embed; /* tied unless the bundle has its own head */
    if (find(tab, h->n_tensors, "lm_head") &&
        !(m->w.head = bind(m, tab, h, "lm_head", BV_DTYPE_F16, h->vocab, h->hidden, NULL, err)))
        return BV_ERR_FORMAT;
    m->w.layers = calloc((size_t)c->n_layers, sizeof(bv_layer));
    if (!m->w.layers) ERR(BV_ERR_NOMEM, "out of memory");
    char name[BV_NAME_LEN];
    for (int l = 0; l < c->n_layers; l++) {
        bv_layer *L = &m->w.layers[l];
        const float **norms[4] = {&L->attn_norm, &L->ffn_norm, &L->attn_sub_norm, &L->ffn_sub_norm};
        static const char *norm_names[4] = {"attn_norm", "ffn_norm", "attn_sub_norm", "ffn_sub_norm"};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, norm_names[i]);
            *norms[i] = bind(m, tab, h, name, BV_DTYPE_F32, 1, i == 3 ? h->ffn : h->hidden, NULL, err);
            if (!*norms[i]) return BV_ERR_FORMAT;
        }
        int rc = bind_linears(m, tab, h, l, err);
        if (rc != BV_OK) return rc;
    }
    return BV_OK;
}

bv_kv *bv_kv_init(const bv_model *m) {
    const bv_config *c = &m->cfg;
    bv_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    int ok = 1;
    size_t rows = (size_t)c->n_layers * c->n_kv_heads * m->s.n_ctx, per_pos = (size_t)c->n_layers * c->n_kv_heads;
    kv->n_ctx = m->s.n_ctx;
    kv->quant = m->kv_quant;
    if (kv->quant == BV_KV_INT8) { /* codes, and one float step per row */
        kv->pos_bytes = per_pos * 2 * ((size_t)c->head_dim + sizeof(float));
        kv->k8 = lazy_calloc(rows * c->head_dim, 1, &ok);
        kv->v8 = lazy_calloc(rows * c->head_dim, 1, &ok);
        kv->ks = lazy_calloc(rows, sizeof(float), &ok);
        kv->vs = lazy_calloc(rows, sizeof(float), &ok);
    } else {
        kv->pos_bytes = per_pos * 2 * (size_t)c->head_dim * sizeof(uint16_t);
        kv->k = lazy_calloc(rows * c->head_dim, sizeof(uint16_t), &ok);
        kv->v = lazy_calloc(rows * c->head_dim, sizeof(uint16_t), &ok);
    }
    if (ok) return kv;
    bv_kv_free(kv);
    return NULL;
}

void bv_kv_free(bv_kv *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv->k8);
    free(kv->v8);
    free(kv->ks);
    free(kv->vs);
    free(kv);
}

size_t bv_kv_bytes(const bv_kv *kv) { return (size_t)kv->n_touched * kv->pos_bytes; }

/* State allocation: the thread pool, the run state for BV_MAX_BATCH tokens
 * and the model's own KV cache (n_ctx 0 or beyond max_ctx: max_ctx), allocated once. */
static int alloc_state(bv_model *m, int n_threads, int n_ctx, char *err) {
    const bv_config *c = &m->cfg;
    m->pool = bv_pool_init(n_threads > 0 ? n_threads : 1);
    if (!m->pool) ERR(BV_ERR_NOMEM, "cannot start worker threads");
    bv_state *s = &m->s;
    int ok = 1, kv_dim = c->n_kv_heads * c->head_dim;
    s->n_ctx = n_ctx > 0 && n_ctx < c->max_ctx ? n_ctx : c->max_ctx;
    int B = BV_MAX_BATCH, wide = c->dim > c->ffn ? c->dim : c->ffn;
    s->x = xcalloc((size_t)B * c->dim, 4, &ok);
    s->xb = xcalloc((size_t)B * wide, 4, &ok);
    s->xb2 = xcalloc((size_t)B * c->dim, 4, &ok);
    /* activations are padded for the 2-bit (128) or T1 (320) layout */
    int pad_wide = bv_t1_pad_cols(wide) > bv_pad_cols(wide) ? bv_t1_pad_cols(wide) : bv_pad_cols(wide);
    s->xq = xcalloc((size_t)B * pad_wide, 1, &ok);
    s->xs = xcalloc(B, 4, &ok);
    s->acc = xcalloc((size_t)B * bv_acc_width(c), 4, &ok);
    s->q = xcalloc((size_t)B * c->dim, 4, &ok);
    s->k = xcalloc((size_t)B * kv_dim, 4, &ok);
    s->v = xcalloc((size_t)B * kv_dim, 4, &ok);
    s->hb = xcalloc((size_t)B * c->ffn, 4, &ok);
    s->hb2 = xcalloc((size_t)B * c->ffn, 4, &ok);
    s->attn_max_spans = (s->n_ctx + BV_ATTN_SPAN - 1) / BV_ATTN_SPAN;
    if (s->attn_max_spans > BV_ATTN_MAX_SPANS) s->attn_max_spans = BV_ATTN_MAX_SPANS;
    s->attn_part = lazy_calloc((size_t)B * c->n_kv_heads * s->attn_max_spans * (c->n_heads / c->n_kv_heads) *
                               (c->head_dim + 2), 4, &ok);
    s->logits_cap = 1;
    s->logits = xcalloc((size_t)c->vocab, 4, &ok);
    s->rope_inv = xcalloc((size_t)c->head_dim / 2, 4, &ok);
    s->rope_cs = xcalloc((size_t)B * c->head_dim, 4, &ok);
    m->kv = bv_kv_init(m);
    if (!ok || !m->kv) ERR(BV_ERR_NOMEM, "out of memory for the run state and a %d-token KV cache", s->n_ctx);
    /* HF: inv_freq = 1 / theta ** (arange(0, hd, 2) / hd), in float32 */
    for (int i = 0; i < c->head_dim / 2; i++)
        s->rope_inv[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
    return BV_OK;
}

/* Head quantization (unembed_quant): int8 / int4 rows with one scale each. */
static int quantize_head(bv_model *m, int head_quant, char *err) {
    const bv_config *c = &m->cfg;
    if (head_quant == BV_HEAD_F16) return BV_OK;
    if (head_quant != BV_HEAD_INT8 && head_quant != BV_HEAD_INT4)
        ERR(BV_ERR_ARG, "unknown head quantization %d", head_quant);
    int ok = 1, nb = bv_blocks(c->dim);
    size_t row = head_quant == BV_HEAD_INT8 ? (size_t)nb * BV_QK : (size_t)nb * BV_I4_GROUP_BYTES;
    m->w.head_quant = head_quant;
    m->w.head_q = alloc_huge((size_t)c->vocab * row, &ok);
    m->w.head_q_scale = xcalloc((size_t)c->vocab, 4, &ok);
    if (!ok) ERR(BV_ERR_NOMEM, "out of memory for the quantized LM head");
    head_job job = {m};
    bv_pool_run(m->pool, quantize_head_rows, &job, bv_pool_threads(m->pool) * 4);
    /* The f16 head pages were read once to quantize; drop them from this
     * process so they do not count against resident memory. Embedding
     * rows still fault back in (read-only file pages) as tokens use them. */
    drop_pages(m->w.head, (size_t)c->vocab * c->dim * 2);
    return BV_OK;
}

/* The in-memory layout of the linears: T1 (repacked) or the file's 2-bit (copied). */
static int set_layout(bv_model *m, int layout, char *err) {
    if (layout == BV_LAYOUT_T1 || (layout == BV_LAYOUT_AUTO && bv_kern.prefer_t1)) {
        if (repack_model_t1(m) != BV_OK) ERR(BV_ERR_NOMEM, "out of memory repacking weights to T1");
    } else if (layout != BV_LAYOUT_2BIT && layout != BV_LAYOUT_AUTO) {
        ERR(BV_ERR_ARG, "unknown ternary layout %d", layout);
    } else if (copy_model_2bit(m) != BV_OK) {
        ERR(BV_ERR_NOMEM, "out of memory copying the weights");
    }
    return BV_OK;
}
#undef ERR

bv_model *bv_model_load(const char *path, int n_threads, int n_ctx, int head_quant, int layout, int kv_quant,
                        char err[BV_ERR_LEN]) {
    if (kv_quant != BV_KV_F16 && kv_quant != BV_KV_INT8) {
        snprintf(err, BV_ERR_LEN, "unknown KV cache format %d", kv_quant);
        return NULL;
    }
    bv_model *m = calloc(1, sizeof *m);
    if (!m) { snprintf(err, BV_ERR_LEN, "out of memory"); return NULL; }
    m->kv_quant = kv_quant; /* before alloc_state: it makes the model's own cache */
    bv_file_header h;
    bv_tensor_entry *tab = NULL;
    int ok = map_file(m, path, err) == BV_OK && check_header(m, path, &h, err) == BV_OK &&
             (tab = read_table(m, &h, err)) != NULL && bind_weights(m, &h, tab, err) == BV_OK;
    free(tab);
    ok = ok && alloc_state(m, n_threads, n_ctx, err) == BV_OK && quantize_head(m, head_quant, err) == BV_OK &&
         set_layout(m, layout, err) == BV_OK;
    if (ok) return m;
    bv_model_free(m);
    return NULL;
}

void bv_model_free(bv_model *m) {
    if (!m) return;
    if (m->pool) bv_pool_free(m->pool);
    bv_state *s = &m->s;
    void *bufs[] = {s->x, s->xb, s->xb2, s->xq, s->xs, s->acc, s->q, s->k, s->v, s->hb, s->hb2,
                    s->attn_part, s->logits, s->rope_inv, s->rope_cs, s->lora_tmp, s->sample_scratch,
                    m->w.head_q, m->w.head_q_scale};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    bv_kv_free(m->kv);
    if (m->w.layers) {
        bv_model_clear_lora(m);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int j = 0; j < BV_N_LINEARS; j++) free(m->w.layers[l].lin[j].owned);
        free(m->w.layers);
    }
    if (m->map) munmap((void *)m->map, m->map_size);
    free(m);
}
