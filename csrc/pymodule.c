/* pymodule.c - engine.llm._native: the CPython face of the C engine.
 * Thin: argument checks, buffer handling, and the GIL released around every
 * call that computes (load, eval, sample, kernel_run). The contract is
 * engine/llm/_native.pyi. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bitvoice.h"
#include "bv_kernels.h"

static PyObject *BundleError;

/* ---- helpers --------------------------------------------------------------------- */

/* physical cores: online CPUs divided by SMT siblings of cpu0 */
static int physical_cores(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    int siblings = 1;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "r");
    if (f) {
        char buf[64] = {0};
        if (fgets(buf, sizeof buf, f)) {
            /* "0-1" or "0,2" mean two threads per core; "0" means one */
            if (strchr(buf, ',') || strchr(buf, '-')) siblings = 2;
        }
        fclose(f);
    }
    long cores = online / siblings;
    return cores < 1 ? 1 : (int)cores;
}

/* Sequence of ints -> malloc'd int32 array; NULL with an exception set on error. */
static int32_t *int_array(PyObject *seq, Py_ssize_t *n_out, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int32_t *out = PyMem_Malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!out) { Py_DECREF(fast); PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred()) { PyMem_Free(out); Py_DECREF(fast); return NULL; }
        if (v < INT32_MIN || v > INT32_MAX) {
            PyMem_Free(out); Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "%s: token id %ld out of range", what, v);
            return NULL;
        }
        out[i] = (int32_t)v;
    }
    Py_DECREF(fast);
    *n_out = n;
    return out;
}

/* ---- Model ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    bv_model *m;
    int busy; /* an eval/sample is running on another thread */
} ModelObject;

static int model_ready(ModelObject *self) {
    if (!self->m) { PyErr_SetString(PyExc_RuntimeError, "model is closed"); return 0; }
    if (self->busy) { PyErr_SetString(PyExc_RuntimeError, "model is busy in another thread"); return 0; }
    return 1;
}

/* ---- KVCache: one sequence's cache (bitvoice.h bv_kv) ------------------------------ */

typedef struct {
    PyObject_HEAD
    ModelObject *model; /* strong reference: the model it was made for */
    bv_kv *kv;          /* owned; independent memory, so it may outlive the model's close() */
} KVCacheObject;

static PyTypeObject KVCacheType;
static PyTypeObject ModelType;

static int KVCache_init(KVCacheObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"model", NULL};
    PyObject *model;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O", kwlist, &model)) return -1;
    if (!PyObject_TypeCheck(model, &ModelType)) {
        PyErr_SetString(PyExc_TypeError, "KVCache(model) needs an engine.llm._native.Model");
        return -1;
    }
    ModelObject *mo = (ModelObject *)model;
    if (!mo->m) { PyErr_SetString(PyExc_RuntimeError, "model is closed"); return -1; }
    bv_kv *kv = bv_kv_init(mo->m);
    if (!kv) { PyErr_NoMemory(); return -1; }
    bv_kv_free(self->kv);
    Py_XDECREF(self->model);
    self->kv = kv;
    Py_INCREF(model);
    self->model = mo;
    return 0;
}

static void KVCache_dealloc(KVCacheObject *self) {
    bv_kv_free(self->kv);
    Py_XDECREF(self->model);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int kv_ready(KVCacheObject *self) {
    if (!self->kv) { PyErr_SetString(PyExc_RuntimeError, "KVCache was not initialized"); return 0; }
    return 1;
}

/* splitmix64 of the seed, so seeds 0, 1, 2 give unrelated streams */
static uint64_t seed_state(unsigned long long seed) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) | 1;
}

static PyObject *KVCache_set_seed(KVCacheObject *self, PyObject *arg) {
    if (!kv_ready(self)) return NULL;
    unsigned long long seed = PyLong_AsUnsignedLongLongMask(arg);
    if (PyErr_Occurred()) return NULL;
    self->kv->rng = seed_state(seed);
    Py_RETURN_NONE;
}

#define KV_GETTER(fname, expr) \
    static PyObject *fname(KVCacheObject *self, void *c) { \
        if (!kv_ready(self)) return NULL; \
        return PyLong_FromUnsignedLongLong((unsigned long long)(expr)); }
KV_GETTER(kv_get_n_cached, self->kv->n_cached)
KV_GETTER(kv_get_n_ctx, self->kv->n_ctx)
KV_GETTER(kv_get_nbytes, bv_kv_bytes(self->kv))

static PyGetSetDef KVCache_getset[] = {
    {"n_cached", (getter)kv_get_n_cached, NULL, "positions valid in this cache", NULL},
    {"n_ctx", (getter)kv_get_n_ctx, NULL, "positions it can hold", NULL},
    {"nbytes", (getter)kv_get_nbytes, NULL, "bytes it holds (every position ever written, keys and values)", NULL},
    {NULL}};

static PyMethodDef KVCache_methods[] = {
    {"set_seed", (PyCFunction)KVCache_set_seed, METH_O, "seed this sequence's sampler"},
    {NULL}};

static PyTypeObject KVCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "engine.llm._native.KVCache",
    .tp_basicsize = sizeof(KVCacheObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One sequence's KV cache and sampler state, for a Model.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)KVCache_init,
    .tp_dealloc = (destructor)KVCache_dealloc,
    .tp_methods = KVCache_methods,
    .tp_getset = KVCache_getset,
};

/* The cache a call names (None: the model's own); NULL with an exception set
 * when it is not a KVCache of this model. */
static bv_kv *cache_of(ModelObject *self, PyObject *cache) {
    if (!cache || cache == Py_None) return self->m->kv;
    if (!PyObject_TypeCheck(cache, &KVCacheType)) {
        PyErr_SetString(PyExc_TypeError, "cache must be a KVCache or None");
        return NULL;
    }
    KVCacheObject *c = (KVCacheObject *)cache;
    if (!kv_ready(c)) return NULL;
    if (c->model != self) {
        PyErr_SetString(PyExc_ValueError, "this KVCache belongs to another model");
        return NULL;
    }
    return c->kv;
}

static int Model_init(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "n_threads", "n_ctx", "unembed_quant", "ternary_layout", "kv_quant", NULL};
    const char *path, *quant = NULL, *layout_name = NULL, *kv_name = NULL;
    int n_threads = 0, n_ctx = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|iizzz", kwlist, &path, &n_threads, &n_ctx, &quant, &layout_name,
                                     &kv_name))
        return -1;
    int kv_quant = BV_KV_F16;
    if (kv_name && !strcmp(kv_name, "int8")) kv_quant = BV_KV_INT8;
    else if (kv_name && strcmp(kv_name, "f16")) {
        PyErr_SetString(PyExc_ValueError, "kv_quant must be None, 'f16' or 'int8'");
        return -1;
    }
    int layout = BV_LAYOUT_AUTO;
    if (layout_name && !strcmp(layout_name, "2bit")) layout = BV_LAYOUT_2BIT;
    else if (layout_name && !strcmp(layout_name, "t1")) layout = BV_LAYOUT_T1;
    else if (layout_name && strcmp(layout_name, "auto")) {
        PyErr_SetString(PyExc_ValueError, "ternary_layout must be None, 'auto', '2bit' or 't1'");
        return -1;
    }
    int head = BV_HEAD_F16;
    if (quant && !strcmp(quant, "int8")) head = BV_HEAD_INT8;
    else if (quant && !strcmp(quant, "int4")) head = BV_HEAD_INT4;
    else if (quant && strcmp(quant, "none") && strcmp(quant, "f16")) {
        PyErr_Format(PyExc_ValueError, "unembed_quant must be None, 'int8' or 'int4', not %R",
                     PyTuple_GET_ITEM(args, 0) ? PyUnicode_FromString(quant) : Py_None);
        return -1;
    }
    if (n_threads < 0 || n_threads > 256) { PyErr_SetString(PyExc_ValueError, "n_threads must be 0..256"); return -1; }
    if (n_ctx < 0) { PyErr_SetString(PyExc_ValueError, "n_ctx must be >= 0"); return -1; }
    if (n_threads == 0) n_threads = physical_cores();
    if (self->m) { bv_model_free(self->m); self->m = NULL; }
    char err[BV_ERR_LEN] = {0};
    bv_model *m;
    Py_BEGIN_ALLOW_THREADS
    m = bv_model_load(path, n_threads, n_ctx, head, layout, kv_quant, err);
    Py_END_ALLOW_THREADS
    if (!m) { PyErr_SetString(BundleError, err[0] ? err : "cannot load model"); return -1; }
    self->m = m;
    return 0;
}

static void Model_dealloc(ModelObject *self) {
    if (self->m) bv_model_free(self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Model_eval(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"tokens", "n_past", "all_logits", "cache", NULL};
    PyObject *seq, *cache = NULL;
    int n_past, all_logits = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|p$O", kwlist, &seq, &n_past, &all_logits, &cache)) return NULL;
    if (!model_ready(self)) return NULL;
    bv_kv *kv = cache_of(self, cache);
    if (!kv) return NULL;
    Py_ssize_t n;
    int32_t *tokens = int_array(seq, &n, "tokens");
    if (!tokens) return NULL;
    bv_model *m = self->m;
    if (n == 0) { PyMem_Free(tokens); PyErr_SetString(PyExc_ValueError, "tokens is empty"); return NULL; }
    if (n_past < 0 || n_past > kv->n_cached) {
        PyMem_Free(tokens);
        PyErr_Format(PyExc_ValueError, "n_past=%d but the cache holds %d tokens", n_past, kv->n_cached);
        return NULL;
    }
    if (n > m->s.n_ctx - n_past) {
        PyMem_Free(tokens);
        PyErr_Format(PyExc_ValueError, "%zd new tokens after %d cached exceed the context of %d", n, n_past,
                     m->s.n_ctx);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab) {
            PyErr_Format(PyExc_ValueError, "token id %d outside the vocabulary of %d", tokens[i], m->cfg.vocab);
            PyMem_Free(tokens);
            return NULL;
        }
    int rc;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = bv_model_eval(m, kv, tokens, (int)n, n_past, all_logits);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyMem_Free(tokens);
    if (rc == BV_CANCELLED) Py_RETURN_FALSE;
    if (rc == BV_ERR_NOMEM) return PyErr_NoMemory();
    if (rc != BV_OK) { PyErr_Format(PyExc_ValueError, "eval failed (code %d)", rc); return NULL; }
    Py_RETURN_TRUE;
}

static PyObject *Model_eval_batch(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"caches", "tokens", NULL};
    PyObject *cache_seq, *seq;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwlist, &cache_seq, &seq)) return NULL;
    if (!model_ready(self)) return NULL;
    PyObject *caches = PySequence_Fast(cache_seq, "caches must be a sequence of KVCache");
    if (!caches) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = 0, nc = PySequence_Fast_GET_SIZE(caches);
    int32_t *tokens = int_array(seq, &n, "tokens");
    bv_kv *kv[BV_MAX_BATCH];
    if (!tokens) goto done;
    if (n == 0 || n != nc || n > BV_MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "eval_batch needs 1..%d tokens, one per cache (got %zd tokens, %zd caches)",
                     BV_MAX_BATCH, n, nc);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(caches, i);
        if (c == Py_None) { PyErr_SetString(PyExc_TypeError, "eval_batch needs a KVCache per token"); goto done; }
        if (!(kv[i] = cache_of(self, c))) goto done;
        for (Py_ssize_t u = 0; u < i; u++)
            if (kv[u] == kv[i]) { PyErr_SetString(PyExc_ValueError, "a cache appears twice in one batch"); goto done; }
        if (tokens[i] < 0 || tokens[i] >= self->m->cfg.vocab || kv[i]->n_cached >= kv[i]->n_ctx) {
            PyErr_Format(PyExc_ValueError, "token %d outside the vocabulary, or its cache is full", tokens[i]);
            goto done;
        }
    }
    int rc;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = bv_model_eval_batch(self->m, kv, tokens, (int)n);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (rc == BV_CANCELLED) result = Py_False;
    else if (rc == BV_ERR_NOMEM) PyErr_NoMemory();
    else if (rc != BV_OK) PyErr_Format(PyExc_ValueError, "eval_batch failed (code %d)", rc);
    else result = Py_True;
    Py_XINCREF(result);
done:
    Py_DECREF(caches);
    if (tokens) PyMem_Free(tokens);
    return result;
}

static PyObject *Model_logits(ModelObject *self, PyObject *unused) {
    if (!model_ready(self)) return NULL;
    bv_model *m = self->m;
    Py_ssize_t count = (Py_ssize_t)m->s.n_logits * m->cfg.vocab;
    if (m->s.n_logits == 0) { PyErr_SetString(PyExc_RuntimeError, "no logits yet: call eval() first"); return NULL; }
    /* a copy: the buffer is overwritten by the next eval */
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)m->s.logits, count * (Py_ssize_t)sizeof(float));
    if (!bytes) return NULL;
    PyObject *view = PyMemoryView_FromObject(bytes);
    Py_DECREF(bytes);
    if (!view) return NULL;
    PyObject *cast = PyObject_CallMethod(view, "cast", "s", "f");
    Py_DECREF(view);
    return cast;
}

static PyObject *Model_sample(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"temperature", "top_k", "top_p", "repetition_penalty", "history", "lookback",
                             "cache", "row", NULL};
    bv_sampling p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .repetition_penalty = 1.0f, .lookback = 64};
    PyObject *hist = NULL, *cache = NULL;
    int row_index = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|fiffOi$Oi", kwlist, &p.temperature, &p.top_k, &p.top_p,
                                     &p.repetition_penalty, &hist, &p.lookback, &cache, &row_index))
        return NULL;
    if (!model_ready(self)) return NULL;
    bv_kv *kv = cache_of(self, cache);
    if (!kv) return NULL;
    if (!(p.temperature >= 0) || p.top_k < 0 || !(p.top_p > 0 && p.top_p <= 1) ||
        !(p.repetition_penalty > 0) || p.lookback < 0) {
        PyErr_SetString(PyExc_ValueError, "bad sampling parameters (temperature >= 0, top_k >= 0, "
                                          "0 < top_p <= 1, repetition_penalty > 0, lookback >= 0)");
        return NULL;
    }
    bv_model *m = self->m;
    if (m->s.n_logits == 0) { PyErr_SetString(PyExc_RuntimeError, "no logits yet: call eval() first"); return NULL; }
    if (row_index < 0) row_index = m->s.n_logits - 1;
    if (row_index >= m->s.n_logits) {
        PyErr_Format(PyExc_ValueError, "row %d, but the last eval kept %d rows of logits", row_index, m->s.n_logits);
        return NULL;
    }
    Py_ssize_t nh = 0;
    int32_t *h = NULL;
    if (hist && hist != Py_None) {
        h = int_array(hist, &nh, "history");
        if (!h) return NULL;
    }
    p.history = h;
    p.n_history = (int)nh;
    /* the repetition penalty rewrites logits: it works on a copy of the last
     * row, so logits() stays the raw model output; without it the sampler
     * only reads the row (no 0.5 MB copy per decoded token) */
    float *last = m->s.logits + (size_t)row_index * m->cfg.vocab, *row = last;
    if (p.repetition_penalty != 1.0f && h) {
        row = PyMem_Malloc(sizeof(float) * (size_t)m->cfg.vocab);
        if (!row) { PyMem_Free(h); return PyErr_NoMemory(); }
        memcpy(row, last, sizeof(float) * (size_t)m->cfg.vocab);
    }
    int tok;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    tok = bv_sample(m, row, &p, &kv->rng);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (row != last) PyMem_Free(row);
    PyMem_Free(h);
    return PyLong_FromLong(tok);
}

static PyObject *Model_set_seed(ModelObject *self, PyObject *arg) {
    if (!model_ready(self)) return NULL;
    unsigned long long seed = PyLong_AsUnsignedLongLongMask(arg);
    if (PyErr_Occurred()) return NULL;
    self->m->kv->rng = seed_state(seed);
    Py_RETURN_NONE;
}

static PyObject *Model_cancel(ModelObject *self, PyObject *unused) {
    /* no busy check: this is how another thread stops a running eval */
    if (self->m) atomic_store(&self->m->cancel, 1);
    Py_RETURN_NONE;
}

static PyObject *Model_clear_cancel(ModelObject *self, PyObject *unused) {
    if (self->m) atomic_store(&self->m->cancel, 0);
    Py_RETURN_NONE;
}

static const char *LORA_TARGETS[BV_N_LINEARS] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

/* "int8" / "int4" / None -> enum bv_lora_quant; -1 with an exception on anything else */
static int lora_quant_of(const char *quant) {
    if (!quant) return BV_LORA_F32;
    if (!strcmp(quant, "int8")) return BV_LORA_INT8;
    if (!strcmp(quant, "int4")) return BV_LORA_INT4;
    PyErr_Format(PyExc_ValueError, "LoRA quant must be None, 'int8' or 'int4', got '%s'", quant);
    return -1;
}

/* Bytes of a rows x cols factor in `quant` storage (bitvoice.h bv_lora_mat) */
static Py_ssize_t lora_factor_bytes(int quant, int rows, int cols) {
    Py_ssize_t row = quant == BV_LORA_INT8 ? cols : quant == BV_LORA_INT4 ? BV_LORA_I4_ROW_BYTES(cols) : 4 * (Py_ssize_t)cols;
    return row * rows;
}

/* The buffers of one factor match its shape and storage; else ValueError. */
static int lora_factor_ok(const char *name, const char *which, int quant, const Py_buffer *data,
                          const Py_buffer *step, int rows, int cols) {
    int step_ok = quant == BV_LORA_F32 ? step->buf == NULL : step->buf != NULL && step->len == 4 * (Py_ssize_t)rows;
    if (data->len == lora_factor_bytes(quant, rows, cols) && step_ok) return 1;
    PyErr_Format(PyExc_ValueError,
                 "LoRA %s: %s must be [%d, %d] in its storage (%s)%s", name, which, rows, cols,
                 quant == BV_LORA_INT8 ? "int8 codes" : quant == BV_LORA_INT4 ? "int4 codes, two per byte" : "float32",
                 quant == BV_LORA_F32 ? ", with no steps" : ", with float32 steps, one per row");
    return 0;
}

static PyObject *Model_set_lora(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"name", "a", "b", "rank", "scale", "quant", "a_step", "b_step", NULL};
    const char *name, *quant_name = NULL;
    Py_buffer a, b, a_step = {0}, b_step = {0};
    int rank;
    float scale;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sy*y*if|$zz*z*", kwlist, &name, &a, &b, &rank, &scale, &quant_name,
                                     &a_step, &b_step))
        return NULL;
    PyObject *result = NULL;
    int quant = lora_quant_of(quant_name);
    if (quant < 0 || !model_ready(self)) goto done;
    int layer = -1, which = -1;
    char target[32] = {0};
    if (sscanf(name, "layers.%d.%31s", &layer, target) != 2) {
        PyErr_Format(PyExc_ValueError, "LoRA target %s is not 'layers.N.<proj>'", name);
        goto done;
    }
    for (int j = 0; j < BV_N_LINEARS; j++)
        if (!strcmp(target, LORA_TARGETS[j])) which = j;
    bv_model *m = self->m;
    if (which < 0 || layer < 0 || layer >= m->cfg.n_layers || rank <= 0) {
        PyErr_Format(PyExc_ValueError, "bad LoRA target %s or rank %d", name, rank);
        goto done;
    }
    bv_ternary *lin = &m->w.layers[layer].lin[which];
    if (!lora_factor_ok(name, "A", quant, &a, &a_step, rank, lin->cols) ||
        !lora_factor_ok(name, "B", quant, &b, &b_step, lin->rows, rank))
        goto done;
    int rc = bv_model_set_lora(m, layer, which, quant, a.buf, a_step.buf, b.buf, b_step.buf, rank, scale);
    if (rc != BV_OK) { PyErr_NoMemory(); goto done; }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    if (a_step.obj) PyBuffer_Release(&a_step);
    if (b_step.obj) PyBuffer_Release(&b_step);
    return result;
}

static PyObject *Model_clear_lora(ModelObject *self, PyObject *unused) {
    if (!model_ready(self)) return NULL;
    bv_model_clear_lora(self->m);
    Py_RETURN_NONE;
}

static PyObject *Model_close(ModelObject *self, PyObject *unused) {
    if (self->busy) { PyErr_SetString(PyExc_RuntimeError, "model is busy in another thread"); return NULL; }
    if (self->m) { bv_model_free(self->m); self->m = NULL; }
    Py_RETURN_NONE;
}

#define INT_GETTER(fname, expr) \
    static PyObject *fname(ModelObject *self, void *c) { \
        if (!self->m) { PyErr_SetString(PyExc_RuntimeError, "model is closed"); return NULL; } \
        return PyLong_FromUnsignedLongLong((unsigned long long)(expr)); }
INT_GETTER(get_n_vocab, self->m->cfg.vocab)
INT_GETTER(get_n_ctx, self->m->s.n_ctx)
INT_GETTER(get_kv_bytes_per_token, self->m->kv->pos_bytes)
INT_GETTER(get_n_threads, bv_pool_threads(self->m->pool))
INT_GETTER(get_n_cached, self->m->kv->n_cached)
INT_GETTER(get_tokens_evaluated, self->m->tokens_evaluated)
INT_GETTER(get_eval_calls, self->m->eval_calls)
INT_GETTER(get_lora_bytes, bv_model_lora_bytes(self->m))

static PyObject *get_ternary_layout(ModelObject *self, void *c) {
    if (!self->m) { PyErr_SetString(PyExc_RuntimeError, "model is closed"); return NULL; }
    return PyUnicode_FromString(self->m->t1 ? "t1" : "2bit");
}

static PyObject *get_kv_quant(ModelObject *self, void *c) {
    if (!self->m) { PyErr_SetString(PyExc_RuntimeError, "model is closed"); return NULL; }
    return PyUnicode_FromString(self->m->kv_quant == BV_KV_INT8 ? "int8" : "f16");
}

static PyGetSetDef Model_getset[] = {
    {"n_vocab", (getter)get_n_vocab, NULL, "vocabulary size", NULL},
    {"n_ctx", (getter)get_n_ctx, NULL, "KV cache length", NULL},
    {"n_threads", (getter)get_n_threads, NULL, "threads in the pool (caller included)", NULL},
    {"n_cached", (getter)get_n_cached, NULL, "tokens valid in the model's own KV cache", NULL},
    {"kv_bytes_per_token", (getter)get_kv_bytes_per_token, NULL, "bytes one position takes in a KV cache", NULL},
    {"tokens_evaluated", (getter)get_tokens_evaluated, NULL, "tokens run through forward since load", NULL},
    {"eval_calls", (getter)get_eval_calls, NULL, "eval() calls since load", NULL},
    {"lora_bytes", (getter)get_lora_bytes, NULL, "bytes the attached LoRA factors hold", NULL},
    {"ternary_layout", (getter)get_ternary_layout, NULL, "in-memory ternary layout: '2bit' or 't1'", NULL},
    {"kv_quant", (getter)get_kv_quant, NULL, "KV cache storage: 'f16' or 'int8'", NULL},
    {NULL}};

static PyMethodDef Model_methods[] = {
    {"eval", (PyCFunction)(void (*)(void))Model_eval, METH_VARARGS | METH_KEYWORDS, "run tokens after n_past cached ones"},
    {"eval_batch", (PyCFunction)(void (*)(void))Model_eval_batch, METH_VARARGS | METH_KEYWORDS,
     "one decode step for several caches in one pass"},
    {"logits", (PyCFunction)Model_logits, METH_NOARGS, "float32 logits of the last eval"},
    {"sample", (PyCFunction)(void (*)(void))Model_sample, METH_VARARGS | METH_KEYWORDS, "pick the next token"},
    {"set_seed", (PyCFunction)Model_set_seed, METH_O, "seed the sampler"},
    {"cancel", (PyCFunction)Model_cancel, METH_NOARGS, "stop a running eval at the next layer"},
    {"clear_cancel", (PyCFunction)Model_clear_cancel, METH_NOARGS, "drop a pending cancel request"},
    {"set_lora", (PyCFunction)(void (*)(void))Model_set_lora, METH_VARARGS | METH_KEYWORDS, "attach a LoRA delta"},
    {"clear_lora", (PyCFunction)Model_clear_lora, METH_NOARGS, "remove every LoRA delta"},
    {"close", (PyCFunction)Model_close, METH_NOARGS, "free the model now"},
    {NULL}};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "engine.llm._native.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A loaded BitNet b1.58 bundle with its KV cache.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Model_init,
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_methods = Model_methods,
    .tp_getset = Model_getset,
};

/* ---- module functions --------------------------------------------------------------- */

static PyObject *kernel_backend(PyObject *mod, PyObject *unused) { return PyUnicode_FromString(bv_kern.name); }

static PyObject *select_kernel(PyObject *mod, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    if (bv_kernels_select(name) != 0) {
        PyErr_Format(PyExc_ValueError, "kernel path %s is unknown or not supported by this CPU (supported: see supported_kernels())", name);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *supported_kernels(PyObject *mod, PyObject *unused) {
    unsigned have = bv_kernels_supported();
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    const char *names[] = {"ref", "avx2", "avx512", "amx"};
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++) {
        if (!(have & (1u << i))) continue;
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s || PyList_Append(out, s) < 0) { Py_XDECREF(s); Py_DECREF(out); return NULL; }
        Py_DECREF(s);
    }
    return out;
}

/* Test hook: run one integer kernel of one path on caller buffers, rows [r0, r1).
 * Returns the int32 outputs as bytes ([n][rows] for gemm, [rows] otherwise). */
static PyObject *kernel_run(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "op", "w", "nb", "x", "n", "rows", "r0", "r1", NULL};
    const char *path, *op;
    Py_buffer w, x;
    int nb, n, rows, r0 = 0, r1 = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssy*iy*ii|ii", kwlist, &path, &op, &w, &nb, &x, &n, &rows, &r0, &r1))
        return NULL;
    PyObject *result = NULL;
    bv_kernels table;
    const bv_kernels *k = bv_kernels_resolved(path, &table) == 0 ? &table : NULL;
    if (r1 < 0) r1 = rows;
    if (!k) { PyErr_Format(PyExc_ValueError, "kernel path %s not available here", path); goto done; }
    if (nb <= 0 || n <= 0 || rows <= 0 || r0 < 0 || r1 > rows || r0 > r1) {
        PyErr_SetString(PyExc_ValueError, "bad shape arguments");
        goto done;
    }
    size_t kpad = (size_t)nb * BV_QK, row_bytes;
    int is_gemm = !strcmp(op, "ternary_gemm") || !strcmp(op, "t1_gemm") || !strcmp(op, "int8_gemm");
    int is_t1 = !strncmp(op, "t1_", 3);
    if (is_t1) kpad = (size_t)nb * BV_T1_QK; /* nb counts T1 blocks for the t1 ops */
    if (!strcmp(op, "ternary_gemv") || !strcmp(op, "ternary_gemm")) row_bytes = (size_t)nb * BV_BLOCK_BYTES;
    else if (is_t1 && (!strcmp(op, "t1_gemv") || is_gemm)) row_bytes = (size_t)nb * BV_T1_BLOCK_BYTES;
    else if (!strcmp(op, "int8_gemv") || !strcmp(op, "int8_gemm")) row_bytes = kpad;
    else if (!strcmp(op, "int4_gemv")) row_bytes = (size_t)nb * BV_I4_GROUP_BYTES;
    else { PyErr_Format(PyExc_ValueError, "unknown op %s", op); goto done; }
    if ((size_t)w.len != row_bytes * rows || (size_t)x.len != kpad * (is_gemm ? n : 1)) {
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match nb/rows/n");
        goto done;
    }
    int out_rows = is_gemm ? n : 1;
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int32_t) * out_rows * rows);
    if (!result) goto done;
    int32_t *y = (int32_t *)PyBytes_AS_STRING(result);
    memset(y, 0, sizeof(int32_t) * (size_t)out_rows * rows);
    Py_BEGIN_ALLOW_THREADS
    if (is_t1 && is_gemm) k->t1_gemm(w.buf, nb, x.buf, n, y, rows, r0, r1);
    else if (is_t1) k->t1_gemv(w.buf, nb, x.buf, y, r0, r1);
    else if (!strcmp(op, "int8_gemm")) k->int8_gemm(w.buf, nb, x.buf, n, y, rows, r0, r1);
    else if (is_gemm) k->ternary_gemm(w.buf, nb, x.buf, n, y, rows, r0, r1);
    else if (!strcmp(op, "ternary_gemv")) k->ternary_gemv(w.buf, nb, x.buf, y, r0, r1);
    else if (!strcmp(op, "int8_gemv")) k->int8_gemv(w.buf, nb, x.buf, y, r0, r1);
    else k->int4_gemv(w.buf, nb, x.buf, y, r0, r1);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&w);
    PyBuffer_Release(&x);
    return result;
}

/* Test hook: one quantized-LoRA kernel of one path (as it runs) on all
 * `rows` rows of q; float32 results, starting from zeros. */
static PyObject *lora_kernel_run(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "quant", "q", "step", "cols", "x", "rows", NULL};
    const char *path, *quant_name;
    Py_buffer q, step, x;
    int cols, rows;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssy*y*iy*i", kwlist, &path, &quant_name, &q, &step, &cols, &x, &rows))
        return NULL;
    PyObject *result = NULL;
    bv_kernels table;
    const bv_kernels *k = bv_kernels_resolved(path, &table) == 0 ? &table : NULL;
    int quant = lora_quant_of(quant_name);
    if (quant < 0) goto done;
    if (!k || quant == BV_LORA_F32) {
        PyErr_Format(PyExc_ValueError, "kernel path %s not available here, or quant not int8/int4", path);
        goto done;
    }
    if (cols <= 0 || rows <= 0 || q.len != lora_factor_bytes(quant, rows, cols) || step.len != 4 * (Py_ssize_t)rows ||
        x.len != 4 * (Py_ssize_t)cols) {
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match rows/cols");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(float) * rows);
    if (!result) goto done;
    float *y = (float *)PyBytes_AS_STRING(result);
    memset(y, 0, sizeof(float) * (size_t)rows);
    Py_BEGIN_ALLOW_THREADS
    if (quant == BV_LORA_INT8) k->lora_i8_gemv(q.buf, step.buf, cols, x.buf, y, 0, rows);
    else k->lora_i4_gemv(q.buf, step.buf, cols, x.buf, y, 0, rows);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&q);
    PyBuffer_Release(&step);
    PyBuffer_Release(&x);
    return result;
}

/* Test hook: one attention span (bv_kernels.h attn_span, or attn_span_i8 when
 * ks / vs are given) of one path as it runs. q: [group][hd] f32; k, v: [n][hd]
 * f16 (uint16) or int8 codes; ks, vs: [n] f32 steps. Returns (m, l, o) as
 * bytes of float32: [group], [group], [group][hd]. */
static PyObject *attn_kernel_run(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "q", "group", "k", "v", "n", "hd", "scale", "ks", "vs", NULL};
    const char *path;
    Py_buffer q, k, v, ks = {0}, vs = {0};
    int group, n, hd;
    float scale;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sy*iy*y*iif|y*y*", kwlist, &path, &q, &group, &k, &v, &n, &hd,
                                     &scale, &ks, &vs))
        return NULL;
    PyObject *result = NULL;
    bv_kernels table;
    const bv_kernels *kt = bv_kernels_resolved(path, &table) == 0 ? &table : NULL;
    int i8 = ks.buf != NULL;
    Py_ssize_t row = (Py_ssize_t)hd * (i8 ? 1 : 2);
    if (!kt) { PyErr_Format(PyExc_ValueError, "kernel path %s not available here", path); goto done; }
    if (group <= 0 || n <= 0 || hd <= 0 || q.len != 4 * (Py_ssize_t)group * hd || k.len != row * n ||
        v.len != row * n || (i8 && (ks.len != 4 * (Py_ssize_t)n || !vs.buf || vs.len != 4 * (Py_ssize_t)n))) {
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match group/n/hd");
        goto done;
    }
    Py_ssize_t out_len = (Py_ssize_t)sizeof(float) * group * (hd + 2);
    result = PyBytes_FromStringAndSize(NULL, out_len);
    if (!result) goto done;
    float *out = (float *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    if (i8) kt->attn_span_i8(q.buf, group, k.buf, ks.buf, v.buf, vs.buf, n, hd, scale, out, out + group, out + 2 * group);
    else kt->attn_span(q.buf, group, k.buf, v.buf, n, hd, scale, out, out + group, out + 2 * group);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&q);
    PyBuffer_Release(&k);
    PyBuffer_Release(&v);
    if (ks.buf) PyBuffer_Release(&ks);
    if (vs.buf) PyBuffer_Release(&vs);
    return result;
}

static PyMethodDef module_methods[] = {
    {"kernel_backend", kernel_backend, METH_NOARGS, "the kernel path in use"},
    {"select_kernel", select_kernel, METH_O, "force a kernel path"},
    {"supported_kernels", supported_kernels, METH_NOARGS, "paths this CPU can run"},
    {"kernel_run", (PyCFunction)(void (*)(void))kernel_run, METH_VARARGS | METH_KEYWORDS, "test hook: run one kernel"},
    {"lora_kernel_run", (PyCFunction)(void (*)(void))lora_kernel_run, METH_VARARGS | METH_KEYWORDS,
     "test hook: run one quantized-LoRA kernel"},
    {"attn_kernel_run", (PyCFunction)(void (*)(void))attn_kernel_run, METH_VARARGS | METH_KEYWORDS,
     "test hook: run one attention span"},
    {NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "engine.llm._native",
                                       "The bitvoice C ternary engine.", -1, module_methods,
                                       NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    if (bv_kernels_select(NULL) != 0) {
        /* BITVOICE_KERNEL names a path this CPU lacks: say so instead of running another */
        PyErr_Format(PyExc_ImportError, "BITVOICE_KERNEL=%s is unknown or not supported by this CPU",
                     getenv("BITVOICE_KERNEL"));
        return NULL;
    }
    if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&KVCacheType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod) return NULL;
    BundleError = PyErr_NewExceptionWithDoc("engine.llm._native.BundleError",
                                            "A bundle file is truncated, corrupt, or has unsupported shapes.",
                                            PyExc_ValueError, NULL);
    if (!BundleError || PyModule_AddObjectRef(mod, "BundleError", BundleError) < 0 ||
        PyModule_AddObjectRef(mod, "Model", (PyObject *)&ModelType) < 0 ||
        PyModule_AddObjectRef(mod, "KVCache", (PyObject *)&KVCacheType) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
