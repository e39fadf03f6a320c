/*
 * cq_bf16.c: small bfloat16 GEMM tiles with float32 accumulation, for the attention tiles of bf16
 * training (S = Q·Kᵀ, O += P·V and their backward products: m, n <= 256, k = the head dim or the
 * key-tile width), on the CPU's AVX512_BF16 units (vdpbf16ps).
 *
 * Why not oneDNN (BF16Matmul): one primitive per shape and one shared stream, so not reentrant,
 * and its per-call overhead is large next to a 64 x 256 x 64 tile. Here one call is one tile on
 * the calling thread: no threads, no allocation, no global state but the kernel choice.
 *
 * Layouts (bf16 values are uint16_t bit patterns, the top half of a float32):
 *   A (m x k): row-major, A[i][kk] at A[i * lda + kk]; lda even and >= k rounded up to even, so a
 *     pair (kk, kk + 1) with kk even is one aligned-in-the-row 32-bit word; the pad column of an
 *     odd k is zero.
 *   B (k x n), "VNNI" pairs: with npad = n rounded up to 32 and k2 = (k + 1) / 2 pair rows,
 *     B[kk][j] at B[((kk / 2) * npad + j) * 2 + kk % 2]; zero for kk >= k and j >= n. One
 *     pair row of 32 columns is two zmm registers, exactly what vdpbf16ps multiplies.
 *
 * Rounding float -> bf16 is BFloat16.round (SortedKit): round to nearest even in integer
 * arithmetic, t = u + 0x7fff + ((u >> 16) & 1), NaN -> (u >> 16) | 0x40. Not vcvtneps2bf16: that
 * flushes float32 subnormals to zero, and the two must give the same bits for every input.
 *
 * Arithmetic. Each product of two bf16 values is exact in float32 (8 + 8 significand bits), so
 * the only roundings are the float32 additions of the sum over kk (in increasing kk, one
 * accumulator per element) and the alpha / beta epilogue. vdpbf16ps treats bf16 subnormal
 * inputs as zero and flushes subnormal results; the portable path does not, so the paths may
 * differ there (below 2^-126, irrelevant for attention) besides the order of each pair's two
 * additions.
 */
#include "cq_internal.h"

/* Columns per packed panel and per micro-kernel tile: two zmm of 16 floats. */
#define NR 32
/* Rows per micro-kernel tile: 2 * MR accumulators + 2 B registers + 1 broadcast of 32 zmm, and
 * 24 independent dot chains hide vdpbf16ps's latency at its throughput. */
#define MR 12

static inline int64_t npad_of(int64_t n) { return (n + NR - 1) / NR * NR; }

size_t cq_bf16_packed_b_count(int64_t k, int64_t n) {
    if (k <= 0 || n <= 0) return 0;
    return (size_t)((k + 1) / 2) * (size_t)npad_of(n) * 2;
}

/* ---------------------------------------------------------------- portable */

static inline uint16_t bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (x != x) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_float(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void pack_b_port(const float *src, int64_t ld, int transposed, int64_t k, int64_t n, uint16_t *dst) {
    const int64_t npad = npad_of(n), k2 = (k + 1) / 2;
    for (int64_t p = 0; p < k2; p++)
        for (int64_t j = 0; j < npad; j++)
            for (int h = 0; h < 2; h++) {
                const int64_t kk = 2 * p + h;
                const float v = kk < k && j < n ? (transposed ? src[j * ld + kk] : src[kk * ld + j]) : 0.0f;
                dst[(p * npad + j) * 2 + h] = bf16_round(v);
            }
}

static void pack_a_port(const float *src, int64_t ld, int transposed, int64_t m, int64_t k, uint16_t *dst,
                        int64_t ldd) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t kk = 0; kk < k; kk++)
            dst[i * ldd + kk] = bf16_round(transposed ? src[kk * ld + i] : src[i * ld + kk]);
        if (k & 1) dst[i * ldd + k] = 0;
    }
}

/* Same sums as the SIMD path: per element one float accumulator, pairs in increasing kk, each
 * pair's products added even-then-odd. Products are exact, so contraction cannot change them. */
static void gemm_port(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *A, int64_t lda,
                      const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t npad = npad_of(ldb), k2 = (k + 1) / 2;
    enum { CH = 64 };
    for (int64_t i = 0; i < m; i++) {
        const uint16_t *a = A + i * lda;
        for (int64_t j0 = 0; j0 < n; j0 += CH) {
            const int64_t nc = n - j0 < CH ? n - j0 : CH;
            float acc[CH] = {0};
            for (int64_t p = 0; p < k2; p++) {
                const float a0 = bf16_float(a[2 * p]), a1 = bf16_float(a[2 * p + 1]);
                const uint16_t *b = B + (p * npad + j0) * 2;
                for (int64_t j = 0; j < nc; j++) {
                    acc[j] = acc[j] + a0 * bf16_float(b[2 * j]);
                    acc[j] = acc[j] + a1 * bf16_float(b[2 * j + 1]);
                }
            }
            float *c = C + i * ldc + j0;
            for (int64_t j = 0; j < nc; j++) c[j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * c[j];
        }
    }
}

#if CQ_X86
/* ---------------------------------------------------------------- AVX-512 (F/BW) packing */

#define T_PK __attribute__((target("avx512f,avx512bw,avx512vl")))
#define T_BF __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* The mask of the first `count` (clamped to 0..16) of 16 lanes. */
INL T_PK __mmask16 first16(int64_t count) {
    return count <= 0 ? 0 : count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1u);
}

/* bf16_round of each lane, in the lane's top 16 bits (the low 16 are garbage). */
INL T_PK __m512i round_hi(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i t = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(t, nan, u, _mm512_set1_epi32(0x00400000));
}

/* 32 consecutive bf16 from two round_hi vectors (lanes 0..15 of x, then of y): their top words. */
INL T_PK __m512i top_words(__m512i x, __m512i y) {
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                         31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(x, idx, y);
}

/* Pair words: lane l = x's bf16 (low half) | y's bf16 (high half). */
INL T_PK __m512i pair_words(__m512i x, __m512i y) {
    return _mm512_mask_blend_epi16(0xaaaaaaaau, _mm512_srli_epi32(x, 16), y);
}

/* In-register transpose of a 16 x 16 matrix of 32-bit words (r[i] lane j -> r[j] lane i). */
INL T_PK void transpose16(__m512i r[16]) {
    __m512i t[16];
    CQ_UNROLL(8)
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    CQ_UNROLL(4)
    for (int i = 0; i < 4; i++) { /* r[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c */
        r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    CQ_UNROLL(4)
    for (int c = 0; c < 4; c++) {
        const __m512i a = _mm512_shuffle_i32x4(r[c], r[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i b = _mm512_shuffle_i32x4(r[c], r[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i d = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i e = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
        t[c] = _mm512_shuffle_i32x4(a, d, _MM_SHUFFLE(2, 0, 2, 0));
        t[8 + c] = _mm512_shuffle_i32x4(a, d, _MM_SHUFFLE(3, 1, 3, 1));
        t[4 + c] = _mm512_shuffle_i32x4(b, e, _MM_SHUFFLE(2, 0, 2, 0));
        t[12 + c] = _mm512_shuffle_i32x4(b, e, _MM_SHUFFLE(3, 1, 3, 1));
    }
    CQ_UNROLL(16)
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* round_hi of 16 floats at p, the first `count` of them (zeros beyond). */
INL T_PK __m512i load_round(const float *p, int64_t count) {
    return round_hi(_mm512_maskz_loadu_ps(first16(count), p));
}

static T_PK void pack_b_512(const float *src, int64_t ld, int transposed, int64_t k, int64_t n, uint16_t *dst) {
    const int64_t npad = npad_of(n), k2 = (k + 1) / 2;
    uint32_t *w = (uint32_t *)(void *)dst; /* pair words: w[p * npad + j] */
    if (!transposed) {
        /* Rows 2p and 2p + 1 of src, 16 columns at a time: pair words without a shuffle. */
        for (int64_t p = 0; p < k2; p++) {
            const float *r0 = src + 2 * p * ld, *r1 = r0 + ld;
            const int have1 = 2 * p + 1 < k;
            for (int64_t j0 = 0; j0 < npad; j0 += 16) {
                const __m512i x = load_round(r0 + j0, n - j0);
                const __m512i y = have1 ? load_round(r1 + j0, n - j0) : _mm512_setzero_si512();
                _mm512_storeu_si512(w + p * npad + j0, pair_words(x, y));
            }
        }
        return;
    }
    /* B[kk][j] = src[j * ld + kk]: a src row holds column j's pairs side by side. Blocks of 16
     * columns x 16 pairs: 16 rows -> pair words (lane = pair), transposed to lane = column. */
    for (int64_t p0 = 0; p0 < k2; p0 += 16) {
        const int64_t kk0 = 2 * p0, np = k2 - p0 < 16 ? k2 - p0 : 16;
        for (int64_t j0 = 0; j0 < npad; j0 += 16) {
            __m512i r[16];
            CQ_UNROLL(16)
            for (int jj = 0; jj < 16; jj++) {
                if (j0 + jj < n) {
                    const float *s = src + (j0 + jj) * ld + kk0;
                    r[jj] = top_words(load_round(s, k - kk0), load_round(s + 16, k - kk0 - 16));
                } else {
                    r[jj] = _mm512_setzero_si512();
                }
            }
            transpose16(r);
            for (int64_t q = 0; q < np; q++) _mm512_storeu_si512(w + (p0 + q) * npad + j0, r[q]);
        }
    }
}

static T_PK void pack_a_512(const float *src, int64_t ld, int transposed, int64_t m, int64_t k, uint16_t *dst,
                            int64_t ldd) {
    const int64_t kpad = (k + 1) & ~(int64_t)1, k2 = kpad / 2;
    if (!transposed) {
        for (int64_t i = 0; i < m; i++) {
            const float *s = src + i * ld;
            uint16_t *d = dst + i * ldd;
            for (int64_t kk0 = 0; kk0 < kpad; kk0 += 32) {
                const __m512i v = top_words(load_round(s + kk0, k - kk0), load_round(s + kk0 + 16, k - kk0 - 16));
                const int64_t left = kpad - kk0;
                const __mmask32 mk = left >= 32 ? 0xffffffffu : (__mmask32)((1u << left) - 1u);
                _mm512_mask_storeu_epi16(d + kk0, mk, v);
            }
        }
        return;
    }
    /* A[i][kk] = src[kk * ld + i]: src rows 2q and 2q + 1 give pair q of 16 rows i (lane = i);
     * 16 pairs x 16 rows transposed to lane = pair, one 64-byte store per row of dst. */
    for (int64_t p0 = 0; p0 < k2; p0 += 16) {
        const int64_t kk0 = 2 * p0, np = k2 - p0 < 16 ? k2 - p0 : 16;
        const __mmask16 mq = first16(np);
        for (int64_t i0 = 0; i0 < m; i0 += 16) {
            const int64_t ni = m - i0 < 16 ? m - i0 : 16;
            __m512i r[16];
            CQ_UNROLL(16)
            for (int q = 0; q < 16; q++) {
                const int64_t kk = kk0 + 2 * q;
                const __m512i x = kk < k ? load_round(src + kk * ld + i0, ni) : _mm512_setzero_si512();
                const __m512i y = kk + 1 < k ? load_round(src + (kk + 1) * ld + i0, ni) : _mm512_setzero_si512();
                r[q] = pair_words(x, y);
            }
            transpose16(r);
            for (int64_t ii = 0; ii < ni; ii++)
                _mm512_mask_storeu_epi32(dst + (i0 + ii) * ldd + kk0, mq, r[ii]);
        }
    }
}

/* ---------------------------------------------------------------- AVX512_BF16 GEMM */

INL T_BF __m512 dp(__m512 acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }

INL uint32_t ld32(const uint16_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* rows x 32 columns of C (mask m0 / m1 on the two 16-column halves) from `rows` rows of A and
 * one 32-column panel of B (pair-row stride npad * 2 elements). */
INL T_BF void tile_bf16(const int rows, int64_t k2, const uint16_t *A, int64_t lda, const uint16_t *B, int64_t npad,
                        float alpha, float beta, float *C, int64_t ldc, __mmask16 m0, __mmask16 m1) {
    __m512 acc[MR][2];
    CQ_UNROLL(12)
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k2; p++) {
        const uint16_t *b = B + p * npad * 2;
        const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 32);
        CQ_UNROLL(12)
        for (int r = 0; r < rows; r++) {
            const __m512i a = _mm512_set1_epi32((int)ld32(A + r * lda + 2 * p));
            acc[r][0] = dp(acc[r][0], a, b0);
            acc[r][1] = dp(acc[r][1], a, b1);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    CQ_UNROLL(12)
    for (int r = 0; r < rows; r++) {
        float *c = C + r * ldc;
        __m512 v0 = _mm512_mul_ps(va, acc[r][0]), v1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) { /* beta == 0: C's old contents are never read (may be NaN) */
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), v1);
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

#define TILE_CASE(R) \
    case R: tile_bf16(R, k2, a, lda, b, npad, alpha, beta, c, ldc, m0, m1); break;

static T_BF void gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *A, int64_t lda,
                           const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t npad = npad_of(ldb), k2 = (k + 1) / 2;
    /* Column panels outside: a panel of B (k2 * 128 bytes, 16 KB at k = 256) stays in L1 while
     * every row block passes over it. */
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
        const __mmask16 m0 = first16(n - j0), m1 = first16(n - j0 - 16);
        const uint16_t *b = B + j0 * 2;
        for (int64_t i0 = 0; i0 < m; i0 += MR) {
            const int rows = m - i0 < MR ? (int)(m - i0) : MR;
            const uint16_t *a = A + i0 * lda;
            float *c = C + i0 * ldc + j0;
            switch (rows) {
                TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6)
                TILE_CASE(7) TILE_CASE(8) TILE_CASE(9) TILE_CASE(10) TILE_CASE(11)
                default: tile_bf16(MR, k2, a, lda, b, npad, alpha, beta, c, ldc, m0, m1); break;
            }
        }
    }
}
#endif /* CQ_X86 */

/* ---------------------------------------------------------------- dispatch */

/* 1: the AVX512_BF16 GEMM; 0: portable. The packs use AVX-512 F/BW at level >= LV_AVX512 (same
 * bits as the portable packs). A forced level below AVX-512 (cq_set_portable, cq_select_kernel)
 * means portable here too. */
static int g_bf16 = -1;

static int cpu_has_bf16(void) {
    int b = __atomic_load_n(&g_bf16, __ATOMIC_RELAXED);
    if (b < 0) {
#if CQ_X86
        __builtin_cpu_init();
        b = __builtin_cpu_supports("avx512bf16") != 0;
#else
        b = 0;
#endif
        __atomic_store_n(&g_bf16, b, __ATOMIC_RELAXED);
    }
    return b;
}

static int use_bf16(void) { return cq_level_() >= LV_AVX512 && cpu_has_bf16(); }

const char *cq_bf16_kernel_name(void) { return use_bf16() ? "avx512-bf16" : "portable"; }

void cq_bf16_pack_b(const float *src, int64_t ld, int transposed, int64_t k, int64_t n, uint16_t *dst) {
    if (k <= 0 || n <= 0) return;
#if CQ_X86
    if (cq_level_() >= LV_AVX512) {
        pack_b_512(src, ld, transposed, k, n, dst);
        return;
    }
#endif
    pack_b_port(src, ld, transposed, k, n, dst);
}

void cq_bf16_pack_a(const float *src, int64_t ld, int transposed, int64_t m, int64_t k, uint16_t *dst, int64_t ldd) {
    if (m <= 0 || k <= 0 || ldd < ((k + 1) & ~(int64_t)1)) return;
#if CQ_X86
    if (cq_level_() >= LV_AVX512) {
        pack_a_512(src, ld, transposed, m, k, dst, ldd);
        return;
    }
#endif
    pack_a_port(src, ld, transposed, m, k, dst, ldd);
}

void cq_bf16_gemm(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    if (m <= 0 || n <= 0 || k < 0 || ldb < n || (lda & 1) || lda < ((k + 1) & ~(int64_t)1)) return;
#if CQ_X86
    if (use_bf16()) {
        gemm_bf16(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    gemm_port(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
