/*
 * cq_linear.c: one matrix multiply y = x · Wᵀ on packed quantized weights (cq_linear), with the
 * activation rows quantized into reusable per-thread scratch and the weight rows split over the
 * cq_pool threads.
 *
 * Packed layout. GGUF stores a matrix row by row; here rows come in panels of 16, and within a
 * panel block by block: for block b, the 16 rows' fp16 scales d (32 bytes), for Q4_1 their 16
 * fp16 mins m (32 bytes), then the rows' weight bytes in 4-byte groups, group-major:
 *     group g (64 bytes) = row 0's bytes 4g..4g+3, row 1's, ..., row 15's
 * (8 groups of signed values for Q8_0, 4 groups of nibble pairs for Q4_0 / Q4_1). A 64-byte
 * group is one 512-bit register with a row per 32-bit lane, so VNNI's dpbusd against 4
 * activation bytes broadcast to every lane advances all 16 rows' dot products at once: no
 * horizontal sums, and one loaded group serves every activation row of a register tile. The
 * panel is as big as the rows it holds (16 x the GGUF block size); the last one is padded.
 *
 * Activations. Each row is quantized per block like cq_quantize_row_q8_0 (Q8_0 / Q4_0 weights)
 * or cq_quantize_row_q8_1 (Q4_1 weights), bit for bit, into scratch laid out for the kernels:
 * the int8 values (k bytes a row), the block scales as floats, and per block an int32 that
 * folds the weights' offsets out of the integer dot (Q4_0: nibble - 8, so -8 * sum(q); Q8_0
 * under VNNI, whose kernel flips the weight bytes' sign bit to get the unsigned w + 128:
 * -128 * sum(q); Q8_0 elsewhere: 0) or, for Q4_1, the block's s = d * sum(q) as float bits.
 *
 * Exactness. A block's integer dot is exact whatever order its products are added in, so each
 * (weight row, activation row) result depends only on the float operations applied per block,
 * in block order:  acc = fma((float)isum, d_w * d_x, acc)  (Q4_1 then acc = fma(m_w, s, acc)).
 * Every SIMD path performs exactly these per lane, whatever the tile size, the row split or the
 * number of activation rows, so a pair's result is bit-identical for any n, any split and any
 * of the SIMD paths; the portable path rounds d_w * d_x * isum + acc without the fma.
 */
#include "cq_internal.h"

#include <pthread.h>
#include <stdlib.h>

#define PANEL 16
#ifndef NJ_512
#define NJ_512 8  /* activation rows per register tile (AVX-512; 6 and 8 measured best, 4 and 12 slower) */
#endif
#define NJ_AVX2 4 /* (AVX2: 16 registers) */

static inline int valid_format(int fmt) { return fmt == F_Q8_0 || fmt == F_Q4_0 || fmt == F_Q4_1; }
static inline size_t row_block_bytes(int fmt) { return fmt == F_Q8_0 ? B_Q8_0 : fmt == F_Q4_0 ? B_Q4_0 : B_Q4_1; }
static inline size_t panel_block_bytes(int fmt) { return PANEL * row_block_bytes(fmt); }
/* Where the weight bytes start in a panel block, and in a GGUF block. */
static inline size_t panel_qs_offset(int fmt) { return fmt == F_Q4_1 ? 64 : 32; }
static inline size_t gguf_qs_offset(int fmt) { return fmt == F_Q4_1 ? 4 : 2; }
/* 4-byte groups per row and block. */
static inline int groups(int fmt) { return fmt == F_Q8_0 ? 8 : 4; }

/* ---------------------------------------------------------------- packing */

size_t cq_packed_bytes(int format, int64_t k, int64_t rows) {
    if (!valid_k(k) || !valid_format(format) || rows < 0) return 0;
    return (size_t)((rows + PANEL - 1) / PANEL) * (size_t)(k / QK) * panel_block_bytes(format);
}

/* Runs BODY for each block of row r: gb is the GGUF block, d, m and qs where row r's scale, min
 * and bytes of group 0 sit in the panel block. */
#define FOR_ROW_BLOCKS(fmt, P, k, r, row, BODY)                                               \
    do {                                                                                      \
        const int64_t nb_ = (k) / QK, lane_ = (r) % PANEL;                                    \
        uint8_t *pp_ = (uint8_t *)(P) + (size_t)((r) / PANEL) * (size_t)nb_ * panel_block_bytes(fmt); \
        uint8_t *gb = (uint8_t *)(row);                                                       \
        for (int64_t b_ = 0; b_ < nb_; b_++, pp_ += panel_block_bytes(fmt), gb += row_block_bytes(fmt)) { \
            uint8_t *const d = pp_ + 2 * lane_, *const m = pp_ + 32 + 2 * lane_;              \
            uint8_t *const qs = pp_ + panel_qs_offset(fmt) + 4 * lane_;                        \
            (void)m;                                                                          \
            BODY                                                                              \
        }                                                                                     \
    } while (0)

void cq_pack_row(int format, void *P, int64_t k, int64_t r, const void *row) {
    if (!valid_k(k) || !valid_format(format) || r < 0) return;
    FOR_ROW_BLOCKS(format, P, k, r, row, {
        memcpy(d, gb, 2);
        if (format == F_Q4_1) memcpy(m, gb + 2, 2);
        for (int g = 0; g < groups(format); g++) memcpy(qs + 64 * g, gb + gguf_qs_offset(format) + 4 * g, 4);
    });
}

void cq_unpack_row(int format, const void *P, int64_t k, int64_t r, void *row) {
    if (!valid_k(k) || !valid_format(format) || r < 0) return;
    FOR_ROW_BLOCKS(format, P, k, r, row, {
        memcpy(gb, d, 2);
        if (format == F_Q4_1) memcpy(gb + 2, m, 2);
        for (int g = 0; g < groups(format); g++) memcpy(gb + gguf_qs_offset(format) + 4 * g, qs + 64 * g, 4);
    });
}

void cq_dequantize_packed_row(int format, const void *P, int64_t k, int64_t r, float *y) {
    if (!valid_k(k) || !valid_format(format) || r < 0) return;
    for (int64_t b = 0; b < k / QK; b++) {
        /* one block at a time through its GGUF form: the packed row is not contiguous */
        uint8_t block[B_Q8_0];
        const uint8_t *pb = (const uint8_t *)P + ((size_t)(r / PANEL) * (size_t)(k / QK) + (size_t)b) * panel_block_bytes(format);
        const int64_t lane = r % PANEL;
        memcpy(block, pb + 2 * lane, 2);
        if (format == F_Q4_1) memcpy(block + 2, pb + 32 + 2 * lane, 2);
        for (int g = 0; g < groups(format); g++)
            memcpy(block + gguf_qs_offset(format) + 4 * g, pb + panel_qs_offset(format) + 64 * g + 4 * lane, 4);
        if (format == F_Q8_0) cq_dequantize_row_q8_0(block, y + b * QK, QK);
        else if (format == F_Q4_0) cq_dequantize_row_q4_0(block, y + b * QK, QK);
        else cq_dequantize_row_q4_1(block, y + b * QK, QK);
    }
}

/* ---------------------------------------------------------------- activation quantizers */

/* One activation row: q (k bytes), d and c (nb each; see the top of the file). cmul is the
 * correction per unit of sum(q): -8 (Q4_0), -128 (Q8_0 under VNNI) or 0. */
typedef struct {
    int8_t *q;
    float *d;
    int32_t *c;
} xrow_t;

/* The block's d and c from its amax-derived scale and the sum of its values. */
static inline void block_scales(int fmt, float dd, int sum, int cmul, float *d, int32_t *c) {
    if (fmt == F_Q4_1) {
        const float s = dd * (float)sum;
        *d = dd;
        memcpy(c, &s, 4);
    } else {
        *d = h2f(f2h(dd)); /* the fp16 scale a Q8_0 block stores */
        *c = cmul * sum;
    }
}

static void quantize_port(int fmt, const float *x, xrow_t o, int64_t nb, int cmul) {
    for (int64_t b = 0; b < nb; b++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float a = __builtin_fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = round_away(x[j] * id);
            o.q[b * QK + j] = (int8_t)q;
            sum += q;
        }
        block_scales(fmt, dd, sum, cmul, o.d + b, o.c + b);
    }
}

#if CQ_X86
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define T_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

static inline uint32_t rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* round_away on 8 lanes: truncate, then step away from zero when the exact fraction is >= 0.5. */
INL T_AVX2 __m256i round_away_256(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_sub_ps(v, t);
    t = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(r, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
    t = _mm256_sub_ps(t, _mm256_and_ps(_mm256_cmp_ps(r, _mm256_set1_ps(-0.5f), _CMP_LE_OQ), one));
    return _mm256_cvttps_epi32(t);
}

static T_AVX2 void quantize_avx2(int fmt, const float *x, xrow_t o, int64_t nb, int cmul) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++, x += QK) {
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
        __m256 am = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float dd = _mm_cvtss_f32(m) / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = round_away_256(_mm256_mul_ps(v[i], vid));
        /* int32 -> int8 in order: packs interleave 128-bit lanes, the permute undoes it */
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)(o.q + b * QK),
                            _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
        block_scales(fmt, dd, _mm_cvtsi128_si32(s), cmul, o.d + b, o.c + b);
    }
}

INL T_512 __m512i round_away_512(__m512 v) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_sub_ps(v, t);
    t = _mm512_mask_add_ps(t, _mm512_cmp_ps_mask(r, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, one);
    t = _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(r, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), t, one);
    return _mm512_cvttps_epi32(t);
}

static T_512 void quantize_512(int fmt, const float *x, xrow_t o, int64_t nb, int cmul) {
    for (int64_t b = 0; b < nb; b++, x += QK) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = round_away_512(_mm512_mul_ps(v0, vid)), q1 = round_away_512(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)(o.q + b * QK), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(o.q + b * QK + 16), _mm512_cvtepi32_epi8(q1));
        block_scales(fmt, dd, _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)), cmul, o.d + b, o.c + b);
    }
}
#endif /* CQ_X86 */

/* ---------------------------------------------------------------- the job */

typedef struct {
    int fmt, level, accumulate;
    const uint8_t *P;
    int64_t k, nb, r0, r1, n, ldx, ldy;
    const float *X;
    float *Y;
    int8_t *xq; /* n rows of k */
    float *xd;  /* n rows of nb */
    int32_t *xc;
    /* the task grid: panel chunks x activation-row chunks */
    int64_t p0, panels, pchunks, achunk, achunks;
    int64_t qchunk; /* activation rows per quantization task */
} job_t;

/* Runs panels [pa, pb) against activation rows [ia, ib). */
typedef void (*panels_fn)(const job_t *J, int64_t pa, int64_t pb, int64_t ia, int64_t ib);

/* The rows of panel p this job writes, as lanes [lo, hi). */
static inline void panel_lanes(const job_t *J, int64_t p, int *lo, int *hi) {
    const int64_t first = p * PANEL;
    *lo = (int)((J->r0 > first ? J->r0 : first) - first);
    *hi = (int)((J->r1 < first + PANEL ? J->r1 : first + PANEL) - first);
}

/* Where lane 0 of panel p goes in output row i (lanes outside [lo, hi) are never touched, so
 * the address may lie outside Y; computed as an integer for that reason). */
static inline float *lane0(const job_t *J, int64_t i, int64_t p) {
    return (float *)((intptr_t)J->Y + (intptr_t)(i * J->ldy + p * PANEL - J->r0) * (intptr_t)sizeof(float));
}

/* ---------------------------------------------------------------- portable kernels */

/* Integer dot of one row's block with one activation block, plus the correction c. */
static inline int32_t idot_port(int fmt, const uint8_t *qs, const int8_t *x, int32_t c) {
    int32_t s = fmt == F_Q4_1 ? 0 : c;
    for (int g = 0; g < groups(fmt); g++) {
        const uint8_t *w = qs + 64 * g;
        for (int t = 0; t < 4; t++) {
            if (fmt == F_Q8_0) {
                s += (int8_t)w[t] * x[4 * g + t];
            } else {
                s += (w[t] & 15) * x[4 * g + t] + (w[t] >> 4) * x[16 + 4 * g + t];
            }
        }
    }
    return s;
}

static void panels_port(const job_t *J, int64_t pa, int64_t pb, int64_t ia, int64_t ib) {
    const int fmt = J->fmt;
    const size_t PB = panel_block_bytes(fmt), QO = panel_qs_offset(fmt);
    for (int64_t p = pa; p < pb; p++) {
        const uint8_t *pp = J->P + (size_t)p * (size_t)J->nb * PB;
        int lo, hi;
        panel_lanes(J, p, &lo, &hi);
        for (int l = lo; l < hi; l++) {
            for (int64_t i = ia; i < ib; i++) {
                const int8_t *x = J->xq + i * J->k;
                const float *xd = J->xd + i * J->nb;
                const int32_t *xc = J->xc + i * J->nb;
                float acc = 0.0f;
                for (int64_t b = 0; b < J->nb; b++) {
                    const uint8_t *blk = pp + (size_t)b * PB;
                    const int32_t isum = idot_port(fmt, blk + QO + 4 * l, x + b * QK, xc[b]);
                    acc = acc + (float)isum * (h2f(rd16(blk + 2 * l)) * xd[b]);
                    if (fmt == F_Q4_1) {
                        float s;
                        memcpy(&s, xc + b, 4);
                        acc = acc + h2f(rd16(blk + 32 + 2 * l)) * s;
                    }
                }
                float *y = lane0(J, i, p) + l;
                *y = J->accumulate ? *y + acc : acc;
            }
        }
    }
}

#if CQ_X86
/* ---------------------------------------------------------------- AVX-512 kernels */

/* One panel against nj activation rows: acc[j] lane l = row l's result for activation row j.
 * xq / xd / xc: the tile's first activation row. The weight groups are loaded (and unpacked)
 * once per block and reused for all nj rows. VNNI: dpbusd with the weight bytes as the
 * unsigned operand (Q8_0 offset by +128, folded out by c). AVX-512BW: maddubs + madd, with
 * Q8_0's signs moved onto the activation bytes (|w| * ±x) so the u8 x s8 pairs cannot
 * saturate. The pair sums are exact either way; only the float tail must be identical. */
#define DEF_PANEL_512(NAME, TGT, VNNI)                                                        \
    INL TGT void NAME(const int fmt, const uint8_t *pp, const int8_t *xq, const float *xd,  \
                      const int32_t *xc, int64_t k, int64_t nb, const int nj, __m512 *acc) { \
        const size_t PB = panel_block_bytes(fmt), QO = panel_qs_offset(fmt);                 \
        const __m512i zero = _mm512_setzero_si512();                                         \
        CQ_UNROLL(8)                                                                         \
        for (int j = 0; j < nj; j++) acc[j] = _mm512_setzero_ps();                           \
        for (int64_t b = 0; b < nb; b++, pp += PB) {                                         \
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)pp));      \
            const __m512 mw = fmt == F_Q4_1                                                  \
                ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(pp + 32)))            \
                : _mm512_setzero_ps();                                                       \
            __m512i w[8];                                                                    \
            __mmask64 neg[8] = {0};                                                          \
            if (fmt == F_Q8_0) {                                                             \
                CQ_UNROLL(8)                                                                 \
                for (int g = 0; g < 8; g++) {                                                \
                    const __m512i v = _mm512_loadu_si512(pp + QO + 64 * g);                  \
                    if (VNNI) {                                                              \
                        w[g] = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));            \
                    } else {                                                                 \
                        w[g] = _mm512_abs_epi8(v);                                           \
                        neg[g] = _mm512_movepi8_mask(v);                                     \
                    }                                                                        \
                }                                                                            \
            } else {                                                                         \
                CQ_UNROLL(4)                                                                 \
                for (int g = 0; g < 4; g++) {                                                \
                    const __m512i v = _mm512_loadu_si512(pp + QO + 64 * g);                  \
                    w[g] = _mm512_and_si512(v, _mm512_set1_epi8(15));                        \
                    w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15)); \
                }                                                                            \
            }                                                                                \
            CQ_UNROLL(8)                                                                     \
            for (int j = 0; j < nj; j++) {                                                   \
                const int8_t *xb = xq + j * k + b * QK;                                      \
                /* two chains, so a lone row (decode) is not bound by dpbusd latency */      \
                __m512i a0 = fmt == F_Q4_1 ? zero : _mm512_set1_epi32(xc[j * nb + b]), a1 = zero; \
                CQ_UNROLL(8)                                                                 \
                for (int g = 0; g < 8; g++) {                                                \
                    __m512i xg = _mm512_set1_epi32((int)rd32(xb + 4 * g));                   \
                    __m512i *a = g % 2 ? &a1 : &a0;                                          \
                    if (VNNI) {                                                              \
                        *a = _mm512_dpbusd_epi32(*a, w[g], xg);                              \
                    } else {                                                                 \
                        if (fmt == F_Q8_0) xg = _mm512_mask_sub_epi8(xg, neg[g], zero, xg);  \
                        *a = _mm512_add_epi32(*a, _mm512_madd_epi16(_mm512_maddubs_epi16(w[g], xg), \
                                                                    _mm512_set1_epi16(1)));  \
                    }                                                                        \
                }                                                                            \
                const __m512 p = _mm512_mul_ps(dw, _mm512_set1_ps(xd[j * nb + b]));          \
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), p, acc[j]); \
                if (fmt == F_Q4_1) {                                                         \
                    float s;                                                                 \
                    memcpy(&s, xc + j * nb + b, 4);                                          \
                    acc[j] = _mm512_fmadd_ps(mw, _mm512_set1_ps(s), acc[j]);                 \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

DEF_PANEL_512(panel_512, T_512, 0)
DEF_PANEL_512(panel_vnni, T_VNNI, 1)

#define CQ_NJ_CASE(PANEL_FN, FMT, K) \
    case K: PANEL_FN(FMT, pp, xq, xd, xc, J->k, J->nb, K, acc); break;
#define DEF_PANELS_512(NAME, TGT, PANEL_FN, FMT)                                             \
    static TGT void NAME(const job_t *J, int64_t pa, int64_t pb, int64_t ia, int64_t ib) {   \
        const size_t stride = (size_t)J->nb * panel_block_bytes(FMT);                        \
        for (int64_t p = pa; p < pb; p++) {                                                  \
            const uint8_t *pp = J->P + (size_t)p * stride;                                   \
            int lo, hi;                                                                      \
            panel_lanes(J, p, &lo, &hi);                                                     \
            const __mmask16 mask = (__mmask16)(((1u << (hi - lo)) - 1u) << lo);              \
            for (int64_t i0 = ia; i0 < ib; i0 += NJ_512) {                                   \
                const int nj = ib - i0 < NJ_512 ? (int)(ib - i0) : NJ_512;                   \
                const int8_t *xq = J->xq + i0 * J->k;                                        \
                const float *xd = J->xd + i0 * J->nb;                                        \
                const int32_t *xc = J->xc + i0 * J->nb;                                      \
                __m512 acc[NJ_512];                                                          \
                switch (nj) {                                                                \
                    CQ_NJ_CASE(PANEL_FN, FMT, 1) CQ_NJ_CASE(PANEL_FN, FMT, 2)                \
                    CQ_NJ_CASE(PANEL_FN, FMT, 3) CQ_NJ_CASE(PANEL_FN, FMT, 4)                \
                    CQ_NJ_CASE(PANEL_FN, FMT, 5) CQ_NJ_CASE(PANEL_FN, FMT, 6)                \
                    CQ_NJ_CASE(PANEL_FN, FMT, 7)                                             \
                    default: PANEL_FN(FMT, pp, xq, xd, xc, J->k, J->nb, NJ_512, acc); break; \
                }                                                                            \
                for (int j = 0; j < nj; j++) {                                               \
                    float *y = lane0(J, i0 + j, p);                                          \
                    __m512 v = acc[j];                                                       \
                    if (J->accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, y), v); \
                    _mm512_mask_storeu_ps(y, mask, v);                                       \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

DEF_PANELS_512(panels_512_q8_0, T_512, panel_512, F_Q8_0)
DEF_PANELS_512(panels_512_q4_0, T_512, panel_512, F_Q4_0)
DEF_PANELS_512(panels_512_q4_1, T_512, panel_512, F_Q4_1)
DEF_PANELS_512(panels_vnni_q8_0, T_VNNI, panel_vnni, F_Q8_0)
DEF_PANELS_512(panels_vnni_q4_0, T_VNNI, panel_vnni, F_Q4_0)
DEF_PANELS_512(panels_vnni_q4_1, T_VNNI, panel_vnni, F_Q4_1)

/* ---------------------------------------------------------------- AVX2 kernels */

/* Half a panel (rows 8h..8h+7, 256 bits) against nj activation rows; per lane the same float
 * operations as the AVX-512 kernels. Loops run group-major so that only one weight group is
 * live at a time (16 registers). */
INL T_AVX2 void panel_avx2(const int fmt, const uint8_t *pp, int h, const int8_t *xq, const float *xd,
                           const int32_t *xc, int64_t k, int64_t nb, const int nj, __m256 *acc) {
    const size_t PB = panel_block_bytes(fmt), QO = panel_qs_offset(fmt);
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(15);
    CQ_UNROLL(4)
    for (int j = 0; j < nj; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, pp += PB) {
        __m256i a[NJ_AVX2];
        CQ_UNROLL(4)
        for (int j = 0; j < nj; j++)
            a[j] = fmt == F_Q4_1 ? _mm256_setzero_si256() : _mm256_set1_epi32(xc[j * nb + b]);
        CQ_UNROLL(8)
        for (int g = 0; g < 8; g++) {
            __m256i v, aw;
            if (fmt == F_Q8_0) {
                v = _mm256_loadu_si256((const __m256i *)(pp + QO + 64 * g + 32 * h));
                aw = _mm256_sign_epi8(v, v);
            } else {
                v = _mm256_loadu_si256((const __m256i *)(pp + QO + 64 * (g % 4) + 32 * h));
                aw = _mm256_and_si256(g < 4 ? v : _mm256_srli_epi16(v, 4), low);
            }
            CQ_UNROLL(4)
            for (int j = 0; j < nj; j++) {
                __m256i xg = _mm256_set1_epi32((int)rd32(xq + j * k + b * QK + 4 * g));
                if (fmt == F_Q8_0) xg = _mm256_sign_epi8(xg, v);
                a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xg), ones));
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pp + 16 * h)));
        CQ_UNROLL(4)
        for (int j = 0; j < nj; j++) {
            const __m256 p = _mm256_mul_ps(dw, _mm256_set1_ps(xd[j * nb + b]));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[j]), p, acc[j]);
            if (fmt == F_Q4_1) {
                float s;
                memcpy(&s, xc + j * nb + b, 4);
                const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pp + 32 + 16 * h)));
                acc[j] = _mm256_fmadd_ps(mw, _mm256_set1_ps(s), acc[j]);
            }
        }
    }
}

#define CQ_NJ_CASE2(FMT, K) case K: panel_avx2(FMT, pp, h, xq, xd, xc, J->k, J->nb, K, acc); break;
#define DEF_PANELS_AVX2(NAME, FMT)                                                           \
    static T_AVX2 void NAME(const job_t *J, int64_t pa, int64_t pb, int64_t ia, int64_t ib) { \
        const size_t stride = (size_t)J->nb * panel_block_bytes(FMT);                        \
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                      \
        for (int64_t p = pa; p < pb; p++) {                                                  \
            const uint8_t *pp = J->P + (size_t)p * stride;                                   \
            int lo, hi;                                                                      \
            panel_lanes(J, p, &lo, &hi);                                                     \
            for (int h = 0; h < 2; h++) {                                                    \
                if (hi <= 8 * h || lo >= 8 * h + 8) continue;                                \
                /* lanes lo - 8h <= l < hi - 8h of this half */                              \
                const __m256i mask = _mm256_and_si256(                                       \
                    _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo - 8 * h - 1)),             \
                    _mm256_cmpgt_epi32(_mm256_set1_epi32(hi - 8 * h), lane));                \
                for (int64_t i0 = ia; i0 < ib; i0 += NJ_AVX2) {                              \
                    const int nj = ib - i0 < NJ_AVX2 ? (int)(ib - i0) : NJ_AVX2;             \
                    const int8_t *xq = J->xq + i0 * J->k;                                    \
                    const float *xd = J->xd + i0 * J->nb;                                    \
                    const int32_t *xc = J->xc + i0 * J->nb;                                  \
                    __m256 acc[NJ_AVX2];                                                     \
                    switch (nj) {                                                            \
                        CQ_NJ_CASE2(FMT, 1) CQ_NJ_CASE2(FMT, 2) CQ_NJ_CASE2(FMT, 3)          \
                        default: panel_avx2(FMT, pp, h, xq, xd, xc, J->k, J->nb, NJ_AVX2, acc); break; \
                    }                                                                        \
                    for (int j = 0; j < nj; j++) {                                           \
                        float *y = lane0(J, i0 + j, p) + 8 * h;                              \
                        __m256 v = acc[j];                                                   \
                        if (J->accumulate) v = _mm256_add_ps(_mm256_maskload_ps(y, mask), v); \
                        _mm256_maskstore_ps(y, mask, v);                                     \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

DEF_PANELS_AVX2(panels_avx2_q8_0, F_Q8_0)
DEF_PANELS_AVX2(panels_avx2_q4_0, F_Q4_0)
DEF_PANELS_AVX2(panels_avx2_q4_1, F_Q4_1)
#endif /* CQ_X86 */

/* ---------------------------------------------------------------- driver */

static const panels_fn panel_kernels[LV_COUNT][3] = {
    {panels_port, panels_port, panels_port},
#if CQ_X86
    {panels_avx2_q8_0, panels_avx2_q4_0, panels_avx2_q4_1},
    {panels_512_q8_0, panels_512_q4_0, panels_512_q4_1},
    {panels_vnni_q8_0, panels_vnni_q4_0, panels_vnni_q4_1},
#endif
};

static void quantize_rows(const job_t *J, int64_t i0, int64_t i1) {
    const int cmul = J->fmt == F_Q4_0 ? -8 : J->fmt == F_Q8_0 && J->level == LV_VNNI ? -128 : 0;
    for (int64_t i = i0; i < i1; i++) {
        const xrow_t o = {J->xq + i * J->k, J->xd + i * J->nb, J->xc + i * J->nb};
        const float *x = J->X + i * J->ldx;
#if CQ_X86
        if (J->level >= LV_AVX512) { quantize_512(J->fmt, x, o, J->nb, cmul); continue; }
        if (J->level == LV_AVX2) { quantize_avx2(J->fmt, x, o, J->nb, cmul); continue; }
#endif
        quantize_port(J->fmt, x, o, J->nb, cmul);
    }
}

static void quantize_task(void *ctx, int t) {
    const job_t *J = (const job_t *)ctx;
    const int64_t i0 = t * J->qchunk, i1 = i0 + J->qchunk < J->n ? i0 + J->qchunk : J->n;
    quantize_rows(J, i0, i1);
}

static void panels_task(void *ctx, int t) {
    const job_t *J = (const job_t *)ctx;
    const int64_t pc = t / J->achunks, ac = t % J->achunks;
    const int64_t pa = J->p0 + J->panels * pc / J->pchunks, pb = J->p0 + J->panels * (pc + 1) / J->pchunks;
    const int64_t ia = ac * J->achunk, ib = ia + J->achunk < J->n ? ia + J->achunk : J->n;
    panel_kernels[J->level][J->fmt](J, pa, pb, ia, ib);
}

/* Activation scratch: per thread, grown as needed, freed when the thread exits. */
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static __thread void *t_scratch;
static __thread size_t t_scratch_bytes;

static void make_scratch_key(void) { pthread_key_create(&g_scratch_key, free); }

static void *scratch(size_t bytes) {
    if (bytes <= t_scratch_bytes) return t_scratch;
    pthread_once(&g_scratch_once, make_scratch_key);
    free(t_scratch);
    bytes = (bytes + bytes / 4 + 4095) & ~(size_t)4095; /* some headroom against regrowth */
    t_scratch = aligned_alloc(64, bytes);
    t_scratch_bytes = t_scratch ? bytes : 0;
    pthread_setspecific(g_scratch_key, t_scratch);
    return t_scratch;
}

/* Below this many multiply-adds a second thread costs more than it saves. */
#define PARALLEL_WORK (1 << 16)

void cq_linear(int format, const void *P, int64_t k, int64_t r0, int64_t r1, const float *X, int64_t ldx,
               int64_t n, float *Y, int64_t ldy, int accumulate) {
    if (!valid_k(k) || !valid_format(format) || r0 < 0 || r1 <= r0 || n <= 0) return;
    job_t J = {0};
    J.fmt = format;
    J.level = cq_level_();
    J.accumulate = accumulate != 0;
    J.P = (const uint8_t *)P;
    J.k = k;
    J.nb = k / QK;
    J.r0 = r0;
    J.r1 = r1;
    J.n = n;
    J.X = X;
    J.ldx = ldx;
    J.Y = Y;
    J.ldy = ldy;
    const size_t qbytes = ((size_t)n * (size_t)k + 63) & ~(size_t)63, sbytes = (size_t)n * (size_t)J.nb * 4;
    uint8_t *s = (uint8_t *)scratch(qbytes + 2 * sbytes);
    if (s == NULL) return; /* out of memory: nothing sensible to compute into */
    J.xq = (int8_t *)s;
    J.xd = (float *)(s + qbytes);
    J.xc = (int32_t *)(s + qbytes + sbytes);

    const int64_t work = n * (r1 - r0) * k;
    const int threads = work < PARALLEL_WORK ? 1 : cq_threads();

    /* Quantize the activation rows, split over the threads when there are many. */
    if (threads > 1 && n * k >= (1 << 15)) {
        J.qchunk = (n + 2 * threads - 1) / (2 * threads);
        cq_parallel_for((int)((n + J.qchunk - 1) / J.qchunk), quantize_task, &J);
    } else {
        quantize_rows(&J, 0, n);
    }

    /* Panel chunks (a few per thread, claimed dynamically, so a late worker costs little),
     * and chunks of activation rows when the panels alone are too few to share. */
    J.p0 = r0 / PANEL;
    J.panels = (r1 + PANEL - 1) / PANEL - J.p0;
    const int64_t nj = J.level >= LV_AVX512 ? NJ_512 : NJ_AVX2, tiles = (n + nj - 1) / nj;
    J.pchunks = threads == 1 ? 1 : J.panels < 4 * threads ? J.panels : 4 * threads;
    J.achunks = 1;
    if (threads > 1 && J.pchunks < 2 * threads) {
        const int64_t want = (2 * threads + J.pchunks - 1) / J.pchunks;
        J.achunks = want < tiles ? want : tiles;
    }
    J.achunk = (tiles + J.achunks - 1) / J.achunks * nj;
    J.achunks = (n + J.achunk - 1) / J.achunk;
    cq_parallel_for((int)(J.pchunks * J.achunks), panels_task, &J);
}
