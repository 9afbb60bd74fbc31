/* dispatch.c - choose the kernel table once, visibly.
 * Order of authority: an explicit request (bv_kernels_select("avx2")), then
 * the BITVOICE_KERNEL environment variable, then the best path cpuid reports.
 * A requested path the CPU lacks is an error, never a silent fallback: tests
 * that force a path must know they ran it. */
#include <stdlib.h>
#include <string.h>

#include "bv_kernels.h"

bv_kernels bv_kern; /* filled by bv_kernels_select() at module init */

#if defined(BV_HAVE_X86_SIMD) && (defined(__x86_64__) || defined(_M_X64))
#include <cpuid.h>

static int os_saves_zmm(void) {
    /* XGETBV: the OS must save opmask, upper ZMM and ZMM16-31 (bits 5,6,7) and
     * SSE/AVX state (bits 1,2), else AVX-512 instructions fault. */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6) == 0xe6;
}
static int os_saves_ymm(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0x6) == 0x6;
}

static unsigned detect(void) {
    unsigned a, b, c, d, set = 1;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return set;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !os_saves_ymm()) return set;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return set;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1;
    int avx512vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    if (avx2 && fma && f16c) set |= 2;
    if ((set & 2) && avx512f && avx512bw && avx512vl && vnni && os_saves_zmm()) set |= 4;
    return set;
}

/* cpuid is slow in some VMs (tens of microseconds): ask once */
unsigned bv_kernels_supported(void) {
    static unsigned cached = 0;
    if (!cached) cached = detect();
    return cached;
}
#else
unsigned bv_kernels_supported(void) { return 1; }
#endif

static int pick(const bv_kernels *table) {
    bv_kern = *table;
    /* BITVOICE_T1=0 keeps the file's 2-bit layout in memory (tests, benchmarks) */
    const char *t1 = getenv("BITVOICE_T1");
    if (t1 && !strcmp(t1, "0")) bv_kern.prefer_t1 = 0;
    /* a SIMD file may leave an entry to the reference (e.g. float helpers) */
    if (!bv_kern.ternary_gemv) bv_kern.ternary_gemv = bv_kernels_ref.ternary_gemv;
    if (!bv_kern.ternary_gemm) bv_kern.ternary_gemm = bv_kernels_ref.ternary_gemm;
    if (!bv_kern.int8_gemv) bv_kern.int8_gemv = bv_kernels_ref.int8_gemv;
    if (!bv_kern.int4_gemv) bv_kern.int4_gemv = bv_kernels_ref.int4_gemv;
    if (!bv_kern.f16_gemv) bv_kern.f16_gemv = bv_kernels_ref.f16_gemv;
    if (!bv_kern.attn_head) bv_kern.attn_head = bv_kernels_ref.attn_head;
    if (!bv_kern.f16_to_f32) bv_kern.f16_to_f32 = bv_kernels_ref.f16_to_f32;
    if (!bv_kern.f32_to_f16) bv_kern.f32_to_f16 = bv_kernels_ref.f32_to_f16;
    if (!bv_kern.t1_gemv) bv_kern.t1_gemv = bv_kernels_ref.t1_gemv;
    if (!bv_kern.t1_gemm) bv_kern.t1_gemm = bv_kernels_ref.t1_gemm;
    return 0;
}

int bv_kernels_select(const char *want) {
    if (!want || !*want) want = getenv("BITVOICE_KERNEL");
    unsigned have = bv_kernels_supported();
    (void)have; /* unused when built without the x86 SIMD files */
    if (!want || !*want || !strcmp(want, "auto")) {
#ifdef BV_HAVE_X86_SIMD
        if (have & 4) return pick(&bv_kernels_avx512);
        if (have & 2) return pick(&bv_kernels_avx2);
#endif
        return pick(&bv_kernels_ref);
    }
    if (!strcmp(want, "ref")) return pick(&bv_kernels_ref);
#ifdef BV_HAVE_X86_SIMD
    if (!strcmp(want, "avx2") && (have & 2)) return pick(&bv_kernels_avx2);
    if (!strcmp(want, "avx512") && (have & 4)) return pick(&bv_kernels_avx512);
#endif
    return -1;
}
