/* threadpool.c - see bv_threadpool.h.
 *
 * One 64-bit atomic "ticket" describes the current job: generation (24 bits),
 * task count (20 bits) and next task index (20 bits). A worker claims a task
 * with a compare-and-swap on the ticket, so it can never run a task of a job
 * that has already finished or been replaced (the generation would differ).
 * The job's function and context are written before the ticket is published
 * and read only between loading a ticket and a successful CAS on it, during
 * which the job cannot change (the caller rewrites them only after every task
 * of the previous job was claimed and completed).
 * Idle workers spin briefly (a decode step launches ~150 jobs per token, each
 * a few tens of microseconds apart), then sleep on a condition variable. */
#define _GNU_SOURCE
#include "bv_threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define SPIN_BEFORE_SLEEP 20000 /* ~50-100 us of polling before a worker sleeps */
#define GEN_SHIFT 40
#define N_SHIFT 20
#define FIELD_MASK ((1ull << 20) - 1)

struct bv_pool {
    int n_threads;
    pthread_t *threads;
    _Atomic uint64_t ticket;
    atomic_int remaining; /* tasks of the current job not yet finished */
    atomic_int sleepers;
    atomic_int stop;
    bv_task_fn fn;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claim and run tasks of generation `gen` until none are left. */
static void drain(bv_pool *p, uint64_t gen) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    for (;;) {
        if ((t >> GEN_SHIFT) != gen) return;
        uint64_t n = (t >> N_SHIFT) & FIELD_MASK, i = t & FIELD_MASK;
        if (i >= n) return;
        bv_task_fn fn = p->fn;
        void *ctx = p->ctx;
        if (atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            fn(ctx, (int)i, (int)n);
            atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_release);
            t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        }
    }
}

static void *worker_main(void *arg) {
    bv_pool *p = arg;
    uint64_t seen = atomic_load(&p->ticket) >> GEN_SHIFT;
    while (!atomic_load(&p->stop)) {
        uint64_t gen = seen;
        for (int spin = 0; spin < SPIN_BEFORE_SLEEP; spin++) {
            gen = atomic_load_explicit(&p->ticket, memory_order_acquire) >> GEN_SHIFT;
            if (gen != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) break;
            cpu_relax();
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!atomic_load(&p->stop) && (atomic_load(&p->ticket) >> GEN_SHIFT) == seen)
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            if (atomic_load(&p->stop)) break;
            gen = atomic_load(&p->ticket) >> GEN_SHIFT;
        }
        seen = gen;
        drain(p, gen);
    }
    return NULL;
}

bv_pool *bv_pool_init(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    bv_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) { free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            p->n_threads = i; /* run with the workers we got */
            break;
        }
    }
    return p;
}

void bv_pool_free(bv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int bv_pool_threads(const bv_pool *p) { return p->n_threads; }

void bv_pool_run(bv_pool *p, bv_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, n_tasks);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->remaining, n_tasks, memory_order_relaxed);
    uint64_t gen = ((atomic_load(&p->ticket) >> GEN_SHIFT) + 1) & ((1ull << 24) - 1);
    atomic_store(&p->ticket, gen << GEN_SHIFT | (uint64_t)n_tasks << N_SHIFT); /* seq_cst publish */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    drain(p, gen);
    for (long spin = 0; atomic_load_explicit(&p->remaining, memory_order_acquire) > 0; spin++) {
        if (spin < 100000) cpu_relax();
        else sched_yield();
    }
}
