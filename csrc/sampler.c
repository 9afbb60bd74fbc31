/* sampler.c - next-token selection: repetition penalty over a lookback
 * window, then greedy, or temperature + top-k + top-p sampling from the
 * sequence's own xorshift64* generator (seeded through the Python API, so a
 * seed reproduces a generation exactly). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitvoice.h"

static uint64_t next_u64(uint64_t *state) {
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static float next_unit(uint64_t *state) { return (float)(next_u64(state) >> 40) / 16777216.0f; }

typedef struct { float logit; int id; } cand;

static int by_logit_desc(const void *a, const void *b) {
    float x = ((const cand *)a)->logit, y = ((const cand *)b)->logit;
    if (x > y) return -1;
    if (x < y) return 1;
    return ((const cand *)a)->id - ((const cand *)b)->id; /* stable tie order */
}

int bv_sample(bv_model *m, float *logits, const bv_sampling *p, uint64_t *rng) {
    int vocab = m->cfg.vocab;
    /* scratch kept on the model: no allocation per decoded token */
    if (!m->s.sample_scratch) m->s.sample_scratch = calloc((size_t)vocab, sizeof(cand) + 1);
    cand *c = m->s.sample_scratch;
    unsigned char *seen = c ? (unsigned char *)(c + vocab) : NULL; /* all zero between calls */
    /* CTRL-style penalty: positive logits divided, negative multiplied; each
     * distinct token of the window penalised once */
    if (p->repetition_penalty != 1.0f && p->history && p->n_history > 0) {
        int start = p->lookback > 0 && p->n_history > p->lookback ? p->n_history - p->lookback : 0;
        if (seen) {
            for (int i = start; i < p->n_history; i++) {
                int id = p->history[i];
                if (id < 0 || id >= vocab || seen[id]) continue;
                seen[id] = 1;
                logits[id] = logits[id] > 0 ? logits[id] / p->repetition_penalty
                                            : logits[id] * p->repetition_penalty;
            }
            for (int i = start; i < p->n_history; i++) /* clear only what was set */
                if (p->history[i] >= 0 && p->history[i] < vocab) seen[p->history[i]] = 0;
        }
    }
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (p->temperature <= 0.0f) return best;

    /* candidates: tokens within exp(-20) of the best (the rest hold < 1e-8 of
     * the mass each), sorted; then top_k, softmax at temperature, top_p cut.
     * The cut keeps the sort short on a 128k vocabulary. */
    if (!c) return best;
    float top = logits[best], floor_logit = top - 20.0f * p->temperature;
    int n = 0;
    for (int i = 0; i < vocab; i++)
        if (logits[i] >= floor_logit) { c[n].logit = logits[i]; c[n].id = i; n++; }
    qsort(c, (size_t)n, sizeof(cand), by_logit_desc);
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    double sum = 0.0;
    for (int i = 0; i < k; i++) {
        c[i].logit = expf((c[i].logit - top) / p->temperature);
        sum += c[i].logit;
    }
    int keep = k;
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < k; i++) {
            cum += c[i].logit / sum;
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
        sum = 0.0;
        for (int i = 0; i < keep; i++) sum += c[i].logit;
    }
    double r = next_unit(rng) * sum, acc = 0.0;
    int pick = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        acc += c[i].logit;
        if (r < acc) { pick = c[i].id; break; }
    }
    return pick;
}
