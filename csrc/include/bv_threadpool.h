/* bv_threadpool.h - a persistent worker pool. Threads are created once at
 * model load; each parallel region is one bv_pool_run() call that hands out
 * task indices [0, n_tasks) to the workers and the calling thread. No thread
 * is created per call. */
#ifndef BV_THREADPOOL_H
#define BV_THREADPOOL_H

typedef void (*bv_task_fn)(void *ctx, int task, int n_tasks);
typedef struct bv_pool bv_pool;

bv_pool *bv_pool_init(int n_threads); /* n_threads counts the caller; 1 = no workers */
void bv_pool_free(bv_pool *pool);
int bv_pool_threads(const bv_pool *pool);
/* Runs fn(ctx, i, n_tasks) for every i in [0, n_tasks), returns when all are done.
 * Not reentrant: one run at a time per pool. n_tasks < 2^20. */
void bv_pool_run(bv_pool *pool, bv_task_fn fn, void *ctx, int n_tasks);

#endif
