/* x86_prefetch.h - software prefetching for the x86 kernels' weight streams
 * and the attention's K/V rows (included by x86_avx2.c and x86_avx512.c; the
 * prefetch instructions are plain SSE).
 *
 * GEMVs read a group of consecutive rows (one contiguous span) a few lines of
 * each row at a time, a pattern the hardware prefetchers follow poorly (with
 * a fixed 256-byte look-ahead, decode reached ~60% of a plain read's GB/s).
 * Each load is paired with two prefetches of the same offset in later groups,
 * which cover every line of those groups once: one at least STREAM_NEAR bytes
 * ahead into L1, so the loads hit, and one at least STREAM_FAR bytes ahead
 * into L2, so that enough lines are in flight to cover the DRAM latency (an
 * L1 prefetch holds one of the core's few L1 fill buffers until its line
 * arrives from DRAM; the L2 one is done with it once the line is in L2).
 * Measured on the 2B decode (T1 matmuls per token): the L1 prefetch alone,
 * best at 1-2 KB, streamed ~24 GB/s, 80% of the 2-thread read bandwidth;
 * with the L2 prefetch 16 KB ahead ~28 GB/s (18.0 -> 14.7 ms; 8 KB and
 * 24 KB a little slower). The prefetches are inline asm, volatile so that
 * each stays where it is written: GCC hoists the builtin's prefetches of an
 * unrolled row loop into one burst at the top of the loop body, which
 * measured as slow as no L2 prefetch at all. */
#ifndef BV_X86_PREFETCH_H
#define BV_X86_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_NEAR 1024
#define STREAM_FAR 16384

typedef struct {
    size_t near, far; /* bytes ahead: whole row groups */
} stream_ahead;

static inline stream_ahead stream_distances(size_t group_bytes) {
    stream_ahead a = {(STREAM_NEAR + group_bytes - 1) / group_bytes * group_bytes,
                      (STREAM_FAR + group_bytes - 1) / group_bytes * group_bytes};
    return a;
}

static inline __attribute__((always_inline)) void prefetch_l1(const void *p) { __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p)); }
static inline __attribute__((always_inline)) void prefetch_l2(const void *p) { __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)p)); }

/* The first STREAM_FAR bytes of a GEMV's rows, which no in-loop L2
 * prefetch covers, in one burst as the GEMV starts: a decode step starts
 * ~120 matmul streams per thread, and each would otherwise begin with
 * DRAM-latency-bound loads (measured: T1 matmul time per 2B token ~1.5% less,
 * relative to the LM head's stream measured in the same runs). */
static inline void stream_start(const void *rows, size_t bytes, stream_ahead a) {
    size_t first = a.far < bytes ? a.far : bytes;
    for (size_t o = 0; o < first; o += 64) prefetch_l2((const char *)rows + o);
}

/* both prefetches for the line at p (the GEMVs whose loop body is short) */
static inline __attribute__((always_inline)) void stream_prefetch(const void *p, stream_ahead a) {
    prefetch_l1((const char *)p + a.near);
    prefetch_l2((const char *)p + a.far);
}

/* The K and V rows come from DRAM (the weight stream evicted them since the
 * last token) and are read once, in order. Each position's rows are
 * prefetched ATTN_NEAR positions ahead into L1 and ATTN_FAR ahead into L2,
 * one position's lines per position computed: spread over the compute, not
 * in a burst per block, which would stall on the core's fill buffers.
 * Measured on the 2B decode (AVX-512), attention per token: 1.92 -> 1.69 ms at 256
 * cached positions, 6.1 -> 5.5 ms at 1024 (a whole block prefetched two
 * blocks ahead before; one thread computes a 4-head position in ~23 ns warm
 * in cache, ~57 ns from DRAM that way). `left`: positions from the block's
 * first to the end of the span (none are prefetched past it; 0: none). */
#define ATTN_NEAR 16
#define ATTN_FAR 64

static inline __attribute__((always_inline)) void prefetch_kv_bytes(const void *rows, int t, int left, int row_bytes) {
    const char *r = rows;
    if (t + ATTN_NEAR < left)
        for (int b = 0; b < row_bytes; b += 64) prefetch_l1(r + (size_t)(t + ATTN_NEAR) * row_bytes + b);
    if (t + ATTN_FAR < left)
        for (int b = 0; b < row_bytes; b += 64) prefetch_l2(r + (size_t)(t + ATTN_FAR) * row_bytes + b);
}

/* f16 rows of hd halves */
static inline __attribute__((always_inline)) void prefetch_kv_row(const uint16_t *rows, int t, int left, int hd) {
    prefetch_kv_bytes(rows, t, left, hd * 2);
}

#endif
