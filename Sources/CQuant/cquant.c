/*
 * cquant.c: quantized matrix kernels (Q8_0, Q4_0, Q4_1 weights; Q8_0 / Q8_1 activations) on
 * GGUF's row layout: quantizers, dequantizers, the cq_matmul_* functions and the kernel choice.
 * (cq_linear.c multiplies packed matrices, the faster path; cq_pool.c runs its threads.)
 *
 * Paths: portable C (everywhere), and on x86-64 AVX2, AVX-512 (F/BW/VL) and AVX-512 VNNI, each
 * compiled with per-function target attributes (the file needs no global -m flags) and chosen at
 * run time with __builtin_cpu_supports.
 *
 * Loop structure of every matmul: activation rows are taken in chunks of at most NCHUNK (16); for
 * each chunk the rows of W are walked once, in memory order (1 row at a time in the portable and
 * AVX2 paths, 4 at a time in the AVX-512 paths), and each W row (a few KB, so it stays in L1) is
 * dotted with the chunk's activation rows in register tiles of up to 4 activation rows, so each W
 * block is unpacked once per tile and read from memory once per chunk. For decode (n == 1) this is
 * one sequential pass over W.
 *
 * The SIMD paths first convert the activation block scales to floats {d, s} (prep_scales), in a
 * small per-call buffer on the stack (malloc'ed only for very long rows or many activation rows);
 * nothing is shared between calls, so every function is reentrant.
 */
#include "cq_internal.h"

#include <float.h>
#include <stdlib.h>

#define NCHUNK 16

float cq_fp16_to_fp32(uint16_t h) { return h2f(h); }
uint16_t cq_fp32_to_fp16(float f) { return f2h(f); }

size_t cq_row_bytes_q8_0(int64_t k) { return valid_k(k) ? (size_t)(k / QK) * B_Q8_0 : 0; }
size_t cq_row_bytes_q4_0(int64_t k) { return valid_k(k) ? (size_t)(k / QK) * B_Q4_0 : 0; }
size_t cq_row_bytes_q4_1(int64_t k) { return valid_k(k) ? (size_t)(k / QK) * B_Q4_1 : 0; }
size_t cq_row_bytes_q8_1(int64_t k) { return valid_k(k) ? (size_t)(k / QK) * B_Q8_1 : 0; }

/* ---------------------------------------------------------------- quantize / dequantize */

void cq_quantize_row_q8_0(const float *x, void *vy, int64_t k) {
    if (!valid_k(k)) return;
    uint8_t *y = (uint8_t *)vy;
    for (int64_t b = 0; b < k / QK; b++, x += QK, y += B_Q8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float a = __builtin_fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(y, f2h(d));
        for (int j = 0; j < QK; j++) y[2 + j] = (uint8_t)(int8_t)round_away(x[j] * id);
    }
}

void cq_quantize_row_q8_1(const float *x, void *vy, int64_t k) {
    if (!valid_k(k)) return;
    uint8_t *y = (uint8_t *)vy;
    for (int64_t b = 0; b < k / QK; b++, x += QK, y += B_Q8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float a = __builtin_fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = round_away(x[j] * id);
            y[8 + j] = (uint8_t)(int8_t)q;
            sum += q;
        }
        wrf(y, d);
        wrf(y + 4, d * (float)sum);
    }
}

void cq_quantize_row_q4_0(const float *x, void *vy, int64_t k) {
    if (!valid_k(k)) return;
    uint8_t *y = (uint8_t *)vy;
    for (int64_t b = 0; b < k / QK; b++, x += QK, y += B_Q4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < __builtin_fabsf(x[j])) { amax = __builtin_fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(y, f2h(d));
        for (int j = 0; j < QK / 2; j++) {
            int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[QK / 2 + j] * id + 8.5f);
            q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
            q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
            y[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void cq_quantize_row_q4_1(const float *x, void *vy, int64_t k) {
    if (!valid_k(k)) return;
    uint8_t *y = (uint8_t *)vy;
    for (int64_t b = 0; b < k / QK; b++, x += QK, y += B_Q4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(y, f2h(d));
        wr16(y + 2, f2h(min));
        for (int j = 0; j < QK / 2; j++) {
            int q0 = (int)((x[j] - min) * id + 0.5f), q1 = (int)((x[QK / 2 + j] - min) * id + 0.5f);
            q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
            q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
            y[4 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void cq_dequantize_row_q8_0(const void *vx, float *y, int64_t k) {
    if (!valid_k(k)) return;
    const uint8_t *x = (const uint8_t *)vx;
    for (int64_t b = 0; b < k / QK; b++, x += B_Q8_0, y += QK) {
        const float d = h2f(rd16(x));
        for (int j = 0; j < QK; j++) y[j] = d * (float)(int8_t)x[2 + j];
    }
}

void cq_dequantize_row_q4_0(const void *vx, float *y, int64_t k) {
    if (!valid_k(k)) return;
    const uint8_t *x = (const uint8_t *)vx;
    for (int64_t b = 0; b < k / QK; b++, x += B_Q4_0, y += QK) {
        const float d = h2f(rd16(x));
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (float)((x[2 + j] & 15) - 8);
            y[j + QK / 2] = d * (float)((x[2 + j] >> 4) - 8);
        }
    }
}

void cq_dequantize_row_q4_1(const void *vx, float *y, int64_t k) {
    if (!valid_k(k)) return;
    const uint8_t *x = (const uint8_t *)vx;
    for (int64_t b = 0; b < k / QK; b++, x += B_Q4_1, y += QK) {
        const float d = h2f(rd16(x)), m = h2f(rd16(x + 2));
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(x[4 + j] & 15) * d + m;
            y[j + QK / 2] = (float)(x[4 + j] >> 4) * d + m;
        }
    }
}

/* ---------------------------------------------------------------- matmul drivers */

/* One chunk: all `rows` rows of W against n <= NCHUNK activation rows X (quantized blocks).
 * xs: the SIMD paths' per-block activation scales, 2 floats per block {d, s} (see prep_scales);
 * the portable path ignores it. */
typedef void (*mm_fn)(const uint8_t *W, const uint8_t *X, const float *xs, float *Y, int64_t nb,
                      int64_t rows, int64_t n, int64_t ldy, int accumulate);

/* Defines NAME, which walks the rows of W and calls
 *     TILE(FMT, w, xq, xrow, xs, xsrow, nb, nt, out)
 * with a compile-time nt (1 .. NTM) for each register tile of activation rows. */
#define CQ_CASE(TILE, FMT, NTM, K)                                                           \
    case K: TILE(FMT, w, xq, xrow, xt, xsrow, nb, (K) < (NTM) ? (K) : (NTM), out); break;
#define DEF_MM(NAME, TGT, TILE, FMT, NTM)                                                    \
    static TGT void NAME(const uint8_t *W, const uint8_t *X, const float *xs, float *Y,      \
                         int64_t nb, int64_t rows, int64_t n, int64_t ldy, int accumulate) { \
        const size_t wrow = (size_t)nb * wblock_bytes(FMT), xrow = (size_t)nb * xblock_bytes(FMT); \
        const size_t xsrow = (size_t)nb * 2;                                                 \
        for (int64_t r = 0; r < rows; r++) {                                                 \
            const uint8_t *w = W + (size_t)r * wrow;                                         \
            for (int64_t i0 = 0; i0 < n; i0 += (NTM)) {                                      \
                float out[8];                                                                \
                const int m = (int)(n - i0 < (NTM) ? n - i0 : (NTM));                        \
                const uint8_t *xq = X + (size_t)i0 * xrow + xqs_offset(FMT);                 \
                const float *xt = xs ? xs + (size_t)i0 * xsrow : NULL;                       \
                switch (m) {                                                                 \
                    CQ_CASE(TILE, FMT, NTM, 1) CQ_CASE(TILE, FMT, NTM, 2)                    \
                    CQ_CASE(TILE, FMT, NTM, 3) CQ_CASE(TILE, FMT, NTM, 4)                    \
                    CQ_CASE(TILE, FMT, NTM, 5) CQ_CASE(TILE, FMT, NTM, 6)                    \
                    CQ_CASE(TILE, FMT, NTM, 7)                                               \
                    default: TILE(FMT, w, xq, xrow, xt, xsrow, nb, (NTM), out); break;       \
                }                                                                            \
                float *y = Y + i0 * ldy + r;                                                 \
                if (accumulate)                                                              \
                    for (int j = 0; j < m; j++) y[j * ldy] += out[j];                        \
                else                                                                         \
                    for (int j = 0; j < m; j++) y[j * ldy] = out[j];                         \
            }                                                                                \
        }                                                                                    \
    }

static inline size_t wblock_bytes(int fmt) { return fmt == F_Q8_0 ? B_Q8_0 : fmt == F_Q4_0 ? B_Q4_0 : B_Q4_1; }
static inline size_t xblock_bytes(int fmt) { return fmt == F_Q4_1 ? B_Q8_1 : B_Q8_0; }
static inline size_t xqs_offset(int fmt) { return fmt == F_Q4_1 ? 8 : 2; }

/* ---------------------------------------------------------------- portable kernels */

#define NT_PORT 4
#define T_NONE

/* Integer dot of one W block with one X block; portable reference semantics. */
INL int32_t dot_block_port(int fmt, const uint8_t *wb, const uint8_t *xb) {
    int32_t s = 0;
    if (fmt == F_Q8_0) {
        for (int i = 0; i < QK; i++) s += (int32_t)(int8_t)wb[2 + i] * (int8_t)xb[2 + i];
    } else if (fmt == F_Q4_0) {
        for (int i = 0; i < QK / 2; i++)
            s += ((wb[2 + i] & 15) - 8) * (int8_t)xb[2 + i] + ((wb[2 + i] >> 4) - 8) * (int8_t)xb[2 + QK / 2 + i];
    } else {
        for (int i = 0; i < QK / 2; i++)
            s += (wb[4 + i] & 15) * (int8_t)xb[8 + i] + (wb[4 + i] >> 4) * (int8_t)xb[8 + QK / 2 + i];
    }
    return s;
}

INL void tile_port(const int fmt, const uint8_t *w, const uint8_t *xq, size_t xrow, const float *xs,
                   size_t xsrow, int64_t nb, const int nt, float *out) {
    (void)xs; (void)xsrow;
    const uint8_t *x = xq - xqs_offset(fmt);
    const size_t wb_ = wblock_bytes(fmt), xb_ = xblock_bytes(fmt);
    for (int j = 0; j < nt; j++) {
        float acc = 0.0f, macc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *wb = w + b * wb_, *xb = x + j * xrow + b * xb_;
            const int32_t s = dot_block_port(fmt, wb, xb);
            const float dw = h2f(rd16(wb));
            if (fmt == F_Q4_1) {
                acc += (float)s * (dw * rdf(xb));
                macc += h2f(rd16(wb + 2)) * rdf(xb + 4);
            } else {
                acc += (float)s * (dw * h2f(rd16(xb)));
            }
        }
        out[j] = acc + macc;
    }
}

DEF_MM(mm_port_q8_0, T_NONE, tile_port, F_Q8_0, NT_PORT)
DEF_MM(mm_port_q4_0, T_NONE, tile_port, F_Q4_0, NT_PORT)
DEF_MM(mm_port_q4_1, T_NONE, tile_port, F_Q4_1, NT_PORT)

#if CQ_X86
/* ---------------------------------------------------------------- AVX2 kernels */

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))

static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
#define NT_AVX2 4

INL T_AVX2 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane 1 + lane 3 of the m-term accumulator. */
INL T_AVX2 float mterm128(__m128 m) {
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_movehdup_ps(m));
}

/*
 * Activation scales for the SIMD paths, 2 floats per block: {d, s}. With them every format's block
 * dot is  d_w * d * dot(qw, qx) + m_w * s  where qw are the bytes the kernel multiplies:
 *   Q8_0 weights: qw = signed q, m_w = 0 (s unused);
 *   Q4_0 weights: qw = unsigned nibble, m_w = d_w, s = -8 * d * sum(qx)  (nibble - 8 folded out);
 *   Q4_1 weights: qw = unsigned nibble, m_w = m, s = the Q8_1 block's s.
 */
static T_AVX2 void prep_scales(int fmt, const uint8_t *X, float *xs, int64_t nb, int64_t n) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < n * nb; i++) {
        if (fmt == F_Q4_1) {
            memcpy(xs + 2 * i, X + (size_t)i * B_Q8_1, 8);     /* {d, s} as stored */
        } else {
            const uint8_t *xb = X + (size_t)i * B_Q8_0;
            const float d = _cvtsh_ss(rd16(xb));
            float s = 0.0f;
            if (fmt == F_Q4_0) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(xb + 2));
                const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
                __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
                t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
                t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
                s = -8.0f * d * (float)_mm_cvtsi128_si32(t);
            }
            xs[2 * i] = d;
            xs[2 * i + 1] = s;
        }
    }
}

/* 32 nibbles of a Q4 block in element order: bytes 0..15 low nibbles, 16..31 high nibbles. */
INL T_AVX2 __m256i unpack_q4_avx2(const uint8_t *qs) {
    const __m256i r = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(r, _mm256_set_epi64x(4, 4, 0, 0)),
                            _mm256_set1_epi8(15));
}

/* The W block's {d_w, m_w} (see prep_scales) as floats in lanes 0, 1 (lane 1 is 0 for Q8_0);
 * lanes 2, 3 zero. */
INL T_AVX2 __m128 wscales1(int fmt, const uint8_t *wb) {
    const uint32_t h = fmt == F_Q8_0 ? rd16(wb) : rd32(wb);
    const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128((int)h));
    return fmt == F_Q4_0 ? _mm_moveldup_ps(v) : v;
}
INL T_AVX2 void tile_avx2(const int fmt, const uint8_t *w, const uint8_t *xq, size_t xrow,
                          const float *xs, size_t xsrow, int64_t nb, const int nt, float *out) {
    const size_t WB = wblock_bytes(fmt), XB = xblock_bytes(fmt);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NT_AVX2];
    __m128 macc[NT_AVX2];
    CQ_UNROLL(8)
    for (int j = 0; j < nt; j++) { acc[j] = _mm256_setzero_ps(); macc[j] = _mm_setzero_ps(); }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * WB;
        __m256i qw, aw;
        if (fmt == F_Q8_0) {
            qw = _mm256_loadu_si256((const __m256i *)(wb + 2));
            aw = _mm256_sign_epi8(qw, qw);
        } else {
            qw = aw = unpack_q4_avx2(wb + (fmt == F_Q4_0 ? 2 : 4));
        }
        const __m128 wv = wscales1(fmt, wb);
        CQ_UNROLL(8)
        for (int j = 0; j < nt; j++) {
            __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + j * xrow + b * XB));
            if (fmt == F_Q8_0) qx = _mm256_sign_epi8(qx, qw);
            const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, qx), ones);
            const __m128 p = _mm_mul_ps(wv, _mm_castsi128_ps(_mm_loadl_epi64(
                                                (const __m128i *)(xs + j * xsrow + 2 * b))));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_broadcastss_ps(p), acc[j]);
            if (fmt != F_Q8_0) macc[j] = _mm_add_ps(macc[j], p);
        }
    }
    CQ_UNROLL(8)
    for (int j = 0; j < nt; j++) out[j] = hsum256(acc[j]) + (fmt != F_Q8_0 ? mterm128(macc[j]) : 0.0f);
}

DEF_MM(mm_avx2_q8_0, T_AVX2, tile_avx2, F_Q8_0, NT_AVX2)
DEF_MM(mm_avx2_q4_0, T_AVX2, tile_avx2, F_Q4_0, NT_AVX2)
DEF_MM(mm_avx2_q4_1, T_AVX2, tile_avx2, F_Q4_1, NT_AVX2)

/* ---------------------------------------------------------------- AVX-512 kernels */
/* Four W rows per tile, two per 512-bit register: bytes 0..31 hold block b of row r, bytes 32..63
 * block b of row r + 1 (a second register rows r + 2, r + 3), and the activation block is
 * broadcast to both halves, so int32 lanes 0..7 are row r's partial sums and lanes 8..15 row
 * r + 1's. The same tile body serves the AVX-512BW path (maddubs + madd) and the VNNI path
 * (dpbusd); they differ only in DOT and the target attribute. */

#define T_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define NT_512 4

#define DOT_512(u, s) _mm512_madd_epi16(_mm512_maddubs_epi16((u), (s)), _mm512_set1_epi16(1))
#define DOT_VNNI(u, s) _mm512_dpbusd_epi32(_mm512_setzero_si512(), (u), (s))

/* 32 bytes at a (bytes 0..31) and 32 bytes at b (bytes 32..63). */
INL T_512 __m512i load2_512(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}
/* Nibbles of the Q4 blocks whose qs are at a and b, in element order, as 64 bytes 0..15. */
INL T_512 __m512i unpack2_q4_512(const uint8_t *a, const uint8_t *b) {
    const __m256i ra = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a));
    const __m256i rb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b));
    const __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(ra), rb, 1);
    return _mm512_and_si512(_mm512_srlv_epi64(r, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)),
                            _mm512_set1_epi8(15));
}

/* VNNI only: the Q4 blocks whose qs are at a and c as 64 bytes [qa & 0x0f, qa & 0xf0, qc & 0x0f,
 * qc & 0xf0]: one AND instead of shift + AND. The high nibbles stay multiplied by 16, which is
 * fine for dpbusd (240 * 127 * 4 fits easily; maddubs' int16 pairs would saturate), and the
 * int32 lanes holding them (4..7 of each 8) are scaled by 1/16 once, at the end of the row. */
INL T_512 __m512i unpack2_q4_x16_512(const uint8_t *a, const uint8_t *c) {
    const __m256i ra = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a));
    const __m256i rc = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)c));
    const __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(ra), rc, 1);
    const long long lo = 0x0f0f0f0f0f0f0f0fLL, hi = (long long)0xf0f0f0f0f0f0f0f0ULL;
    return _mm512_and_si512(r, _mm512_set_epi64(hi, hi, lo, lo, hi, hi, lo, lo));
}

/* The W scales of blocks a, b, c, d as floats {d_w, m_w} in lanes 0-1, 2-3, 4-5, 6-7. */
INL T_512 __m256 wscales4(int fmt, const uint8_t *a, const uint8_t *b, const uint8_t *c,
                          const uint8_t *d) {
    const __m128i h = _mm_insert_epi32(
        _mm_insert_epi32(_mm_insert_epi32(_mm_cvtsi32_si128((int)rd32(a)), (int)rd32(b), 1),
                         (int)rd32(c), 2),
        (int)rd32(d), 3);
    /* Q8_0: bytes 2, 3 are weights, not m; zero them so no junk (e.g. subnormal) halves
     * reach the float unit, where they can cost microcode assists. */
    const __m256 v = _mm256_cvtph_ps(fmt == F_Q8_0 ? _mm_and_si128(h, _mm_set1_epi32(0xffff)) : h);
    return fmt == F_Q4_0 ? _mm256_moveldup_ps(v) : v;
}

/* W bytes (signed for Q8_0, nibbles for Q4) of the blocks at a and c. */
#define CQ_WBYTES(fmt, X16, a, c, QO, aw, neg)                                               \
    do {                                                                                     \
        if ((fmt) == F_Q8_0) {                                                               \
            const __m512i qw_ = load2_512((a) + (QO), (c) + (QO));                           \
            aw = _mm512_abs_epi8(qw_);                                                       \
            neg = _mm512_movepi8_mask(qw_);                                                  \
        } else {                                                                             \
            aw = (X16) ? unpack2_q4_x16_512((a) + (QO), (c) + (QO))                          \
                       : unpack2_q4_512((a) + (QO), (c) + (QO));                             \
        }                                                                                    \
    } while (0)

#define DEF_TILE_512(NAME, TGT, DOT, X16)                                                    \
    INL TGT void NAME(const int fmt, const uint8_t *const *wr, const uint8_t *xq,            \
                      size_t xrow, const float *xs, size_t xsrow, int64_t nb, const int nt,  \
                      float (*out)[4]) {                                                     \
        const size_t WB = wblock_bytes(fmt), XB = xblock_bytes(fmt);                         \
        const size_t QO = fmt == F_Q4_1 ? 4 : 2;                                             \
        const __m512i zero = _mm512_setzero_si512();                                         \
        const __m512i idx0 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0); \
        const __m512i idx1 = _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4); \
        const uint8_t *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];                    \
        __m512 acc0[NT_512], acc1[NT_512];                                                   \
        __m256 macc[NT_512];                                                                 \
        CQ_UNROLL(8)                                                                         \
        for (int j = 0; j < nt; j++) {                                                       \
            acc0[j] = _mm512_setzero_ps(); acc1[j] = _mm512_setzero_ps();                    \
            macc[j] = _mm256_setzero_ps();                                                   \
        }                                                                                    \
        /* Software prefetch of the next group of 4 rows (the driver passes consecutive      \
         * rows), spread evenly over this group's iterations: once W is out of cache the     \
         * hardware prefetchers alone fall behind on 4 interleaved streams. Prefetching      \
         * past the end of W is harmless. */                                                 \
        const uintptr_t pfn = (uintptr_t)w0 + 4 * (uintptr_t)nb * WB;                        \
        for (int64_t b = 0; b < nb; b++) {                                                   \
            const size_t o = (size_t)b * WB;                                                 \
            _mm_prefetch((const char *)(pfn + 4 * o), _MM_HINT_T0);                          \
            _mm_prefetch((const char *)(pfn + 4 * o + 64), _MM_HINT_T0);                     \
            if (WB * 4 > 128) _mm_prefetch((const char *)(pfn + 4 * o + 128), _MM_HINT_T0);  \
            __m512i aw0, aw1;                                                                \
            __mmask64 neg0 = 0, neg1 = 0;                                                    \
            CQ_WBYTES(fmt, X16, w0 + o, w1 + o, QO, aw0, neg0);                              \
            CQ_WBYTES(fmt, X16, w2 + o, w3 + o, QO, aw1, neg1);                              \
            const __m256 wv = wscales4(fmt, w0 + o, w1 + o, w2 + o, w3 + o);                 \
            CQ_UNROLL(8)                                                                     \
            for (int j = 0; j < nt; j++) {                                                   \
                const __m512i qx = _mm512_broadcast_i64x4(                                   \
                    _mm256_loadu_si256((const __m256i *)(xq + j * xrow + b * XB)));          \
                __m512i qx0 = qx, qx1 = qx;                                                  \
                if (fmt == F_Q8_0) {                                                         \
                    qx0 = _mm512_mask_sub_epi8(qx, neg0, zero, qx);                          \
                    qx1 = _mm512_mask_sub_epi8(qx, neg1, zero, qx);                          \
                }                                                                            \
                const __m256 p = _mm256_mul_ps(wv, _mm256_castpd_ps(                         \
                                     _mm256_broadcast_sd((const double *)(xs + j * xsrow + 2 * b)))); \
                const __m512 p5 = _mm512_castps256_ps512(p);                                 \
                acc0[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DOT(aw0, qx0)),                 \
                                          _mm512_permutexvar_ps(idx0, p5), acc0[j]);         \
                acc1[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DOT(aw1, qx1)),                 \
                                          _mm512_permutexvar_ps(idx1, p5), acc1[j]);         \
                if (fmt != F_Q8_0) macc[j] = _mm256_add_ps(macc[j], p);                      \
            }                                                                                \
        }                                                                                    \
        CQ_UNROLL(8)                                                                         \
        for (int j = 0; j < nt; j++) {                                                       \
            /* lanes: acc0 = rows 0 | 1, acc1 = rows 2 | 3 (8 each) */                       \
            if ((X16) && fmt != F_Q8_0) {                                                    \
                const __m512 f16 = _mm512_set_ps(0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, \
                                                 0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1); \
                acc0[j] = _mm512_mul_ps(acc0[j], f16);                                       \
                acc1[j] = _mm512_mul_ps(acc1[j], f16);                                       \
            }                                                                                \
            const __m512 a = _mm512_add_ps(                                                  \
                _mm512_shuffle_f32x4(acc0[j], acc1[j], _MM_SHUFFLE(2, 0, 2, 0)),             \
                _mm512_shuffle_f32x4(acc0[j], acc1[j], _MM_SHUFFLE(3, 1, 3, 1)));            \
            /* a: 128-bit lanes = row 0, row 1, row 2, row 3 partial sums (4 floats each) */ \
            __m128 t[4];                                                                     \
            t[0] = _mm512_castps512_ps128(a);                                                \
            t[1] = _mm512_extractf32x4_ps(a, 1);                                             \
            t[2] = _mm512_extractf32x4_ps(a, 2);                                             \
            t[3] = _mm512_extractf32x4_ps(a, 3);                                             \
            _MM_TRANSPOSE4_PS(t[0], t[1], t[2], t[3]);                                       \
            __m128 s = _mm_add_ps(_mm_add_ps(t[0], t[1]), _mm_add_ps(t[2], t[3]));           \
            if (fmt != F_Q8_0) {                                                             \
                /* macc lanes 1, 3, 5, 7: the rows' m-terms */                               \
                const __m256 m = macc[j];                                                    \
                const __m128 mo = _mm_shuffle_ps(_mm256_castps256_ps128(m),                  \
                                                 _mm256_extractf128_ps(m, 1), _MM_SHUFFLE(3, 1, 3, 1)); \
                s = _mm_add_ps(s, mo);                                                       \
            }                                                                                \
            _mm_storeu_ps(out[j], s);                                                        \
        }                                                                                    \
    }

/* Like DEF_MM, four rows of W at a time (missing rows of the last group repeat its first). */
#define CQ_CASE4(TILE, FMT, NTM, K)                                                          \
    case K: TILE(FMT, wr, xq, xrow, xt, xsrow, nb, (K) < (NTM) ? (K) : (NTM), o); break;
#define DEF_MM4(NAME, TGT, TILE, FMT, NTM)                                                   \
    static TGT void NAME(const uint8_t *W, const uint8_t *X, const float *xs, float *Y,      \
                         int64_t nb, int64_t rows, int64_t n, int64_t ldy, int accumulate) { \
        const size_t wrow = (size_t)nb * wblock_bytes(FMT), xrow = (size_t)nb * xblock_bytes(FMT); \
        const size_t xsrow = (size_t)nb * 2;                                                 \
        for (int64_t r = 0; r < rows; r += 4) {                                              \
            const int nr = rows - r < 4 ? (int)(rows - r) : 4;                               \
            const uint8_t *wr[4];                                                            \
            for (int q = 0; q < 4; q++) wr[q] = W + (size_t)(r + (q < nr ? q : 0)) * wrow;   \
            for (int64_t i0 = 0; i0 < n; i0 += (NTM)) {                                      \
                float o[8][4];                                                               \
                const int m = (int)(n - i0 < (NTM) ? n - i0 : (NTM));                        \
                const uint8_t *xq = X + (size_t)i0 * xrow + xqs_offset(FMT);                 \
                const float *xt = xs + (size_t)i0 * xsrow;                                   \
                switch (m) {                                                                 \
                    CQ_CASE4(TILE, FMT, NTM, 1) CQ_CASE4(TILE, FMT, NTM, 2)                  \
                    CQ_CASE4(TILE, FMT, NTM, 3) CQ_CASE4(TILE, FMT, NTM, 4)                  \
                    CQ_CASE4(TILE, FMT, NTM, 5) CQ_CASE4(TILE, FMT, NTM, 6)                  \
                    CQ_CASE4(TILE, FMT, NTM, 7)                                              \
                    default: TILE(FMT, wr, xq, xrow, xt, xsrow, nb, (NTM), o); break;        \
                }                                                                            \
                float *y = Y + i0 * ldy + r;                                                 \
                for (int j = 0; j < m; j++) {                                                \
                    if (accumulate)                                                          \
                        for (int q = 0; q < nr; q++) y[j * ldy + q] += o[j][q];              \
                    else                                                                     \
                        for (int q = 0; q < nr; q++) y[j * ldy + q] = o[j][q];               \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

DEF_TILE_512(tile_512, T_512, DOT_512, 0)
DEF_TILE_512(tile_vnni, T_VNNI, DOT_VNNI, 1)

DEF_MM4(mm_512_q8_0, T_512, tile_512, F_Q8_0, NT_512)
DEF_MM4(mm_512_q4_0, T_512, tile_512, F_Q4_0, NT_512)
DEF_MM4(mm_512_q4_1, T_512, tile_512, F_Q4_1, NT_512)
DEF_MM4(mm_vnni_q8_0, T_VNNI, tile_vnni, F_Q8_0, NT_512)
DEF_MM4(mm_vnni_q4_0, T_VNNI, tile_vnni, F_Q4_0, NT_512)
DEF_MM4(mm_vnni_q4_1, T_VNNI, tile_vnni, F_Q4_1, NT_512)
#endif /* CQ_X86 */

/* ---------------------------------------------------------------- dispatch */

static const char *const level_names[LV_COUNT] = {"portable", "avx2", "avx512", "avx512-vnni"};

static const mm_fn kernels[LV_COUNT][3] = {
    {mm_port_q8_0, mm_port_q4_0, mm_port_q4_1},
#if CQ_X86
    {mm_avx2_q8_0, mm_avx2_q4_0, mm_avx2_q4_1},
    {mm_512_q8_0, mm_512_q4_0, mm_512_q4_1},
    {mm_vnni_q8_0, mm_vnni_q4_0, mm_vnni_q4_1},
#endif
};

static int g_best = -1;   /* best level this CPU supports; detected on first use */
static int g_forced = -1; /* level forced by cq_set_portable / cq_select_kernel, -1: none */

static int detect_level(void) {
#if CQ_X86
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
          __builtin_cpu_supports("f16c")))
        return LV_PORTABLE;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl")))
        return LV_AVX2;
    return __builtin_cpu_supports("avx512vnni") ? LV_VNNI : LV_AVX512;
#else
    return LV_PORTABLE;
#endif
}

static int best_level(void) {
    int b = __atomic_load_n(&g_best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = detect_level();
        __atomic_store_n(&g_best, b, __ATOMIC_RELAXED);
    }
    return b;
}

static int current_level(void) {
    const int f = __atomic_load_n(&g_forced, __ATOMIC_RELAXED);
    return f >= 0 ? f : best_level();
}

int cq_level_(void) { return current_level(); }

const char *cq_kernel_name(void) { return level_names[current_level()]; }

void cq_set_portable(int on) { __atomic_store_n(&g_forced, on ? LV_PORTABLE : -1, __ATOMIC_RELAXED); }

int cq_select_kernel(const char *name) {
    if (name == NULL || name[0] == '\0') {
        __atomic_store_n(&g_forced, -1, __ATOMIC_RELAXED);
        return 1;
    }
    for (int lv = 0; lv < LV_COUNT; lv++) {
        if (strcmp(name, level_names[lv]) == 0) {
            if (lv > best_level()) return 0;
            __atomic_store_n(&g_forced, lv, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return 0;
}

#define XS_STACK_FLOATS 4096 /* 16 KB of activation scales on the stack; larger needs malloc */

static void run_matmul(int fmt, const void *W, const void *Xq, float *Y, int64_t k, int64_t rows,
                       int64_t n, int64_t ldy, int accumulate) {
    if (!valid_k(k) || rows <= 0 || n <= 0) return;
    const int64_t nb = k / QK;
    const size_t xrow = (size_t)nb * xblock_bytes(fmt);
    /* Balanced chunks of at most NCHUNK activation rows; W is streamed once per chunk. */
    const int64_t nchunks = (n + NCHUNK - 1) / NCHUNK;
    const int64_t chunk = (n + nchunks - 1) / nchunks;
    int level = current_level();
    float xs_stack[XS_STACK_FLOATS];
    float *xs = NULL, *xs_heap = NULL;
    if (level != LV_PORTABLE) {
        const size_t need = (size_t)chunk * (size_t)nb * 2;
        if (need <= XS_STACK_FLOATS) {
            xs = xs_stack;
        } else {
            xs = xs_heap = (float *)malloc(need * sizeof(float));
            if (xs == NULL) level = LV_PORTABLE; /* out of memory: the portable path needs no scratch */
        }
    }
    const mm_fn f = kernels[level][fmt];
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        const int64_t m = n - i0 < chunk ? n - i0 : chunk;
        const uint8_t *X = (const uint8_t *)Xq + (size_t)i0 * xrow;
#if CQ_X86
        if (xs) prep_scales(fmt, X, xs, nb, m);
#endif
        f((const uint8_t *)W, X, xs, Y + i0 * ldy, nb, rows, m, ldy, accumulate);
    }
    free(xs_heap);
}

void cq_matmul_q8_0(const void *W, const void *Xq, float *Y, int64_t k, int64_t rows, int64_t n,
                    int64_t ldy, int accumulate) {
    run_matmul(F_Q8_0, W, Xq, Y, k, rows, n, ldy, accumulate);
}

void cq_matmul_q4_0(const void *W, const void *Xq, float *Y, int64_t k, int64_t rows, int64_t n,
                    int64_t ldy, int accumulate) {
    run_matmul(F_Q4_0, W, Xq, Y, k, rows, n, ldy, accumulate);
}

void cq_matmul_q4_1(const void *W, const void *Xq, float *Y, int64_t k, int64_t rows, int64_t n,
                    int64_t ldy, int accumulate) {
    run_matmul(F_Q4_1, W, Xq, Y, k, rows, n, ldy, accumulate);
}
