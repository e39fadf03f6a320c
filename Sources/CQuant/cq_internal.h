/*
 * cq_internal.h: what the CQuant sources share (not part of the public API in include/).
 */
#ifndef CQ_INTERNAL_H
#define CQ_INTERNAL_H

#include "cquant.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "cquant assumes a little-endian host"
#endif

#if defined(__x86_64__)
#define CQ_X86 1
#include <immintrin.h>
#else
#define CQ_X86 0
#endif

#define QK 32
#define B_Q8_0 34
#define B_Q4_0 18
#define B_Q4_1 20
#define B_Q8_1 40

#define INL static inline __attribute__((always_inline))
#define CQ_HIDDEN __attribute__((visibility("hidden")))

#define CQ_STR_(x) #x
#define CQ_UNROLL(n) _Pragma(CQ_STR_(GCC unroll n))

/* Weight formats; the same numbers as the public CQ_Q8_0, CQ_Q4_0, CQ_Q4_1. */
enum { F_Q8_0 = 0, F_Q4_0 = 1, F_Q4_1 = 2 };

/* Kernel levels, in increasing order of what the CPU must support. */
enum { LV_PORTABLE = 0, LV_AVX2 = 1, LV_AVX512 = 2, LV_VNNI = 3, LV_COUNT = 4 };

/* The level the kernels run at now (the CPU's best unless forced by cq_select_kernel). */
CQ_HIDDEN int cq_level_(void);

/* ---------------------------------------------------------------- scalar helpers */

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float rdf(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void wrf(uint8_t *p, float v) { memcpy(p, &v, 4); }

static inline float h2f(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);            /* inf / NaN (payload kept) */
    } else if (exp == 0) {
        const float f = (float)man * 0x1p-24f;                /* zero / subnormal, exact */
        return sign ? -f : f;
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {                                  /* NaN: keep the top payload bits */
        uint16_t man = (uint16_t)((ax >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (man ? man : 0x200u));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (incl. inf) -> inf */
    if (ax >= 0x38800000u) {                                 /* normal half */
        uint32_t r = ax - 0x38000000u;                       /* rebias exponent 127 -> 15 */
        r = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;          /* round to nearest even */
        return (uint16_t)(sign | r);
    }
    if (ax <= 0x33000000u) return sign;                      /* <= 2^-25 rounds to zero */
    /* subnormal half: result = round_even(value / 2^-24) */
    const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t s = 126u - e;                             /* 14 .. 24 */
    uint32_t r = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

/* roundf (half away from zero) for |v| < 2^23, without needing libm. */
static inline int round_away(float v) {
    int t = (int)v;                       /* toward zero */
    const float r = v - (float)t;         /* the exact fraction */
    if (r >= 0.5f) t++;
    else if (r <= -0.5f) t--;
    return t;
}

static inline int valid_k(int64_t k) { return k > 0 && k % QK == 0; }

#endif /* CQ_INTERNAL_H */
