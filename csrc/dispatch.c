/* dispatch.c - choose the kernel table once, visibly.
 * Order of authority: an explicit request (bv_kernels_select("avx2")), then
 * the BITVOICE_KERNEL environment variable, then the best path cpuid reports.
 * A requested path the CPU lacks is an error, never a silent fallback: tests
 * that force a path must know they ran it.
 *
 * The one other run-time choice of code in the engine is not in this table:
 * forward.c's element-wise float helpers (rmsnorm, act_quant, softmax pieces,
 * the float32 LoRA rows) are marked BV_FLOAT_CLONES, i.e. GCC target_clones
 * ("avx512f", "avx2", "default"), and the dynamic loader picks a clone once per
 * process from the CPU (an ifunc), whatever BITVOICE_KERNEL says. They give
 * the same bits on every clone (see forward.c), so forcing a kernel path
 * still tests exactly what that path computes. */
#define _GNU_SOURCE /* syscall() for the AMX permission request */
#include <stdlib.h>
#include <string.h>

#include "bv_kernels.h"

bv_kernels bv_kern; /* filled by bv_kernels_select() at module init */

#if defined(BV_HAVE_X86_SIMD) && (defined(__x86_64__) || defined(_M_X64))
#include <cpuid.h>
#if defined(BV_HAVE_AMX) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

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

/* AMX tiles: the CPU has AMX-TILE and AMX-INT8, the OS saves tile state
 * (XCR0 bits 17, 18), and Linux grants this process the 8 KB of tile data
 * (arch_prctl ARCH_REQ_XCOMP_PERM, process-wide, once). */
static int amx_usable(unsigned edx7) {
#if defined(BV_HAVE_AMX) && defined(__linux__)
    if (!((edx7 >> 24) & 1) || !((edx7 >> 25) & 1)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3) != 3) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    (void)edx7;
    return 0;
#endif
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
    if ((set & 4) && amx_usable(d)) set |= 8;
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

/* A table's entries as they run: the AMX table brings only its prefill GEMMs
 * and takes the rest from the AVX-512 one; an entry any SIMD file leaves NULL
 * (e.g. a float helper) comes from the reference. */
static void fill_entries(bv_kernels *k) {
#define FROM(base, field) if (!k->field) k->field = (base).field
#define FILL(base) \
    FROM(base, ternary_gemv); FROM(base, ternary_gemm); FROM(base, int8_gemv); FROM(base, int8_gemm); \
    FROM(base, int4_gemv); \
    FROM(base, t1_gemv); FROM(base, t1_gemm); FROM(base, f16_gemv); FROM(base, attn_span); \
    FROM(base, attn_span_i8); \
    FROM(base, f16_to_f32); FROM(base, f32_to_f16); FROM(base, lora_i8_gemv); FROM(base, lora_i4_gemv)
#ifdef BV_HAVE_AMX
    if (!strcmp(k->name, "amx")) { FILL(bv_kernels_avx512); }
#endif
    FILL(bv_kernels_ref);
#undef FILL
#undef FROM
}

static int pick(const bv_kernels *table) {
    bv_kern = *table;
    /* BITVOICE_T1=0 keeps the file's 2-bit layout in memory (tests, benchmarks) */
    const char *t1 = getenv("BITVOICE_T1");
    if (t1 && !strcmp(t1, "0")) bv_kern.prefer_t1 = 0;
    fill_entries(&bv_kern);
    return 0;
}

int bv_kernels_resolved(const char *name, bv_kernels *out) {
    const bv_kernels *table = bv_kernels_named(name);
    if (!table) return -1;
    *out = *table;
    fill_entries(out);
    return 0;
}

const bv_kernels *bv_kernels_named(const char *name) {
    unsigned have = bv_kernels_supported();
    (void)have; /* unused when built without the x86 SIMD files */
    if (!strcmp(name, "ref")) return &bv_kernels_ref;
#ifdef BV_HAVE_X86_SIMD
    if (!strcmp(name, "avx2") && (have & 2)) return &bv_kernels_avx2;
    if (!strcmp(name, "avx512") && (have & 4)) return &bv_kernels_avx512;
#endif
#ifdef BV_HAVE_AMX
    if (!strcmp(name, "amx") && (have & 8)) return &bv_kernels_amx;
#endif
    return NULL;
}

int bv_kernels_select(const char *want) {
    if (!want || !*want) want = getenv("BITVOICE_KERNEL");
    if (!want || !*want || !strcmp(want, "auto")) { /* the best path this CPU has */
        const bv_kernels *best = bv_kernels_named("amx");
        if (!best) best = bv_kernels_named("avx512");
        if (!best) best = bv_kernels_named("avx2");
        return pick(best ? best : &bv_kernels_ref);
    }
    const bv_kernels *table = bv_kernels_named(want);
    return table ? pick(table) : -1;
}
