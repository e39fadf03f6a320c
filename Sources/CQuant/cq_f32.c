/*
 * cq_f32.c: cq_linear_f32, float32 weights times a few activation rows, reading the weights where
 * they are (the model's own buffer: no packing, no copy).
 *
 * Why: OpenBLAS streams a weight matrix at memory speed for one activation row (sgemv), but for
 * 2..16 rows sgemm packs the weights first and streams them at about half that speed, so
 * verifying 2 rows cost nearly twice 1. Here each weight byte is read from memory once per call.
 *
 * Form. Dot products along k. A register tile of up to RW weight rows x NX activation rows keeps
 * one accumulator per (weight row, activation row) pair, 16 lanes wide: lane l sums the products
 * at columns c = l (mod 16) in increasing c, acc = fma(w, x, acc); the k % 16 leftover columns
 * make one last step with zeros loaded beyond k. Then the 16 lanes are summed by a fixed tree:
 * lane l + lane l+8 (l < 8), then l + l+4, l + l+2, l + l+1. A panel of RW weight rows stays in
 * cache while every activation tile passes over it.
 *
 * Exactness. Every tile variant (edge tiles included) performs exactly these operations per
 * pair, so a pair's result depends only on its weight row, its activation row and the path,
 * never on n, the other rows, r0 / r1 or the thread split. The AVX2 path keeps each 16-lane
 * accumulator as two 8-lane halves (its first tree step adds them), so it gives the same bits as
 * the AVX-512 path; the portable path does the same sums with a separate multiply and add.
 */
#include "cq_internal.h"

#define LANES 16
/* Below this many multiply-adds a second thread costs more than it saves. */
#define PARALLEL_WORK (1 << 16)

typedef struct fjob {
    const float *W, *X;
    float *Y;
    int64_t k, ldw, r0, r1, ldx, n, ldy;
    int accumulate;
    int64_t chunk; /* weight rows per task */
    void (*rows)(const struct fjob *J, int64_t ra, int64_t rb); /* the kernel path */
} fjob_t;

/* Rows [ra, rb) of W against every activation row. */
typedef void (*rows_fn)(const fjob_t *J, int64_t ra, int64_t rb);

/* ---------------------------------------------------------------- portable */

/* Strict multiply-then-add, so the portable path rounds the same way on every target (GCC has
 * no such pragma: its -ffp-contract may fuse, still the same for every pair). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static float dot_port(const float *w, const float *x, int64_t k) {
    float acc[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= k; c += LANES)
        for (int l = 0; l < LANES; l++) acc[l] = acc[l] + w[c + l] * x[c + l];
    if (c < k)
        for (int l = 0; l < LANES; l++) acc[l] = acc[l] + (c + l < k ? w[c + l] * x[c + l] : 0.0f);
    for (int h = LANES / 2; h > 0; h /= 2)
        for (int l = 0; l < h; l++) acc[l] = acc[l] + acc[l + h];
    return acc[0];
}

static void rows_port(const fjob_t *J, int64_t ra, int64_t rb) {
    for (int64_t r = ra; r < rb; r++) {
        const float *w = J->W + r * J->ldw;
        for (int64_t i = 0; i < J->n; i++) {
            const float s = dot_port(w, J->X + i * J->ldx, J->k);
            float *y = J->Y + i * J->ldy + (r - J->r0);
            *y = J->accumulate ? *y + s : s;
        }
    }
}

#if CQ_X86
/* The SIMD loops prefetch the weight rows this far ahead (the next 4-row panel): measured 10-40%
 * faster for n = 4..16 on the model's shapes, ~5% for n = 1. */
#define PF_ROWS 4
/* Prefetch W row r + PF_ROWS at column c; an integer address, as it may lie beyond W (prefetches
 * never fault). */
#define PREFETCH_AHEAD(w, r, ldw, c) \
    _mm_prefetch((const char *)((uintptr_t)(w) + (uintptr_t)((((r) + PF_ROWS) * (ldw) + (c)) * 4)), _MM_HINT_T0)
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

/* ---------------------------------------------------------------- AVX-512 */

#define RW_512 4 /* weight rows per tile (and per cached panel) */
#define NX_512 4 /* activation rows per tile: 16 accumulators of the 32 registers */

/* Sums the 16 lanes of each of A[0..15] by the tree above; lane 4j + a of the result is A[4a + j]'s. */
INL T_512 __m512 reduce16_512(const __m512 *A) {
    __m512 B[8], C[4], D[2];
    CQ_UNROLL(8)
    for (int q = 0; q < 8; q++) /* [A(2q) l + l+8, A(2q+1) l + l+8] */
        B[q] = _mm512_add_ps(_mm512_shuffle_f32x4(A[2 * q], A[2 * q + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(A[2 * q], A[2 * q + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    CQ_UNROLL(4)
    for (int s = 0; s < 4; s++) /* 128-bit chunk m: A(4s + m) lanes l + l+4 */
        C[s] = _mm512_add_ps(_mm512_shuffle_f32x4(B[2 * s], B[2 * s + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(B[2 * s], B[2 * s + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    CQ_UNROLL(2)
    for (int t = 0; t < 2; t++) /* chunk m: A(8t + m) lanes l + l+2 in 0-1, A(8t + 4 + m) in 2-3 */
        D[t] = _mm512_add_ps(_mm512_shuffle_ps(C[2 * t], C[2 * t + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(C[2 * t], C[2 * t + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* chunk m: A(m), A(4 + m), A(8 + m), A(12 + m) */
    return _mm512_add_ps(_mm512_shuffle_ps(D[0], D[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(D[0], D[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* rw weight rows (w, stride ldw) x nj activation rows (x, stride ldx) into y (rw floats per
 * output row, stride ldy). Pair (a, j) lives in acc[4a + j]; unused accumulators stay zero and
 * do not touch the others' lanes. */
INL T_512 void tile_512(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t k, const int rw,
                        const int nj, float *y, int64_t ldy, int accumulate) {
    __m512 acc[16];
    CQ_UNROLL(16)
    for (int p = 0; p < 16; p++) acc[p] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + LANES <= k; c += LANES) {
        __m512 wv[RW_512];
        CQ_UNROLL(4)
        for (int a = 0; a < rw; a++) wv[a] = _mm512_loadu_ps(w + a * ldw + c);
        CQ_UNROLL(4)
        for (int a = 0; a < rw; a++) PREFETCH_AHEAD(w, a, ldw, c);
        CQ_UNROLL(4)
        for (int j = 0; j < nj; j++) {
            const __m512 xv = _mm512_loadu_ps(x + j * ldx + c);
            CQ_UNROLL(4)
            for (int a = 0; a < rw; a++) acc[4 * a + j] = _mm512_fmadd_ps(wv[a], xv, acc[4 * a + j]);
        }
    }
    if (c < k) {
        const __mmask16 m = (__mmask16)((1u << (k - c)) - 1u);
        __m512 wv[RW_512];
        CQ_UNROLL(4)
        for (int a = 0; a < rw; a++) wv[a] = _mm512_maskz_loadu_ps(m, w + a * ldw + c);
        CQ_UNROLL(4)
        for (int j = 0; j < nj; j++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + j * ldx + c);
            CQ_UNROLL(4)
            for (int a = 0; a < rw; a++) acc[4 * a + j] = _mm512_fmadd_ps(wv[a], xv, acc[4 * a + j]);
        }
    }
    float out[16] __attribute__((aligned(64)));
    _mm512_store_ps(out, reduce16_512(acc));
    const __mmask8 m = (__mmask8)((1u << rw) - 1u);
    CQ_UNROLL(4)
    for (int j = 0; j < nj; j++) {
        __m128 v = _mm_load_ps(out + 4 * j);
        if (accumulate) v = _mm_add_ps(_mm_maskz_loadu_ps(m, y + j * ldy), v);
        _mm_mask_storeu_ps(y + j * ldy, m, v);
    }
}

#define TILE_512_CASE(RW, NJ)                                                                  \
    case (RW) * 8 + (NJ): tile_512(w, J->ldw, x, J->ldx, J->k, RW, NJ, y, J->ldy, J->accumulate); break;

static T_512 void rows_512(const fjob_t *J, int64_t ra, int64_t rb) {
    for (int64_t r = ra; r < rb; r += RW_512) {
        const int rw = rb - r < RW_512 ? (int)(rb - r) : RW_512;
        const float *w = J->W + r * J->ldw;
        for (int64_t i0 = 0; i0 < J->n; i0 += NX_512) {
            const int nj = J->n - i0 < NX_512 ? (int)(J->n - i0) : NX_512;
            const float *x = J->X + i0 * J->ldx;
            float *y = J->Y + i0 * J->ldy + (r - J->r0);
            switch (rw * 8 + nj) {
                TILE_512_CASE(1, 1) TILE_512_CASE(1, 2) TILE_512_CASE(1, 3) TILE_512_CASE(1, 4)
                TILE_512_CASE(2, 1) TILE_512_CASE(2, 2) TILE_512_CASE(2, 3) TILE_512_CASE(2, 4)
                TILE_512_CASE(3, 1) TILE_512_CASE(3, 2) TILE_512_CASE(3, 3) TILE_512_CASE(3, 4)
                TILE_512_CASE(4, 1) TILE_512_CASE(4, 2) TILE_512_CASE(4, 3)
                default: tile_512(w, J->ldw, x, J->ldx, J->k, RW_512, NX_512, y, J->ldy, J->accumulate); break;
            }
        }
    }
}

/* ---------------------------------------------------------------- AVX2 */

#define RW_AVX2 2 /* 2 x 2 pairs, two 8-lane halves each: 8 accumulators of the 16 registers */
#define NX_AVX2 2

/* The tree above on one pair's halves (lanes 0-7 and 8-15). */
INL T_AVX2 float reduce_avx2(__m256 lo, __m256 hi) {
    const __m256 v = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The mask of the first `count` (clamped to 0..8) of 8 lanes. */
INL T_AVX2 __m256i first_lanes(int64_t count) {
    const int n = count < 0 ? 0 : count > 8 ? 8 : (int)count;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INL T_AVX2 void tile_avx2(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t k, const int rw,
                          const int nj, float *y, int64_t ldy, int accumulate) {
    __m256 lo[4], hi[4]; /* pair (a, j) in [2a + j] */
    CQ_UNROLL(4)
    for (int p = 0; p < 4; p++) lo[p] = hi[p] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + LANES <= k; c += LANES) {
        __m256 wl[RW_AVX2], wh[RW_AVX2];
        CQ_UNROLL(2)
        for (int a = 0; a < rw; a++) {
            wl[a] = _mm256_loadu_ps(w + a * ldw + c);
            wh[a] = _mm256_loadu_ps(w + a * ldw + c + 8);
            PREFETCH_AHEAD(w, a, ldw, c);
        }
        CQ_UNROLL(2)
        for (int j = 0; j < nj; j++) {
            const __m256 xl = _mm256_loadu_ps(x + j * ldx + c), xh = _mm256_loadu_ps(x + j * ldx + c + 8);
            CQ_UNROLL(2)
            for (int a = 0; a < rw; a++) {
                lo[2 * a + j] = _mm256_fmadd_ps(wl[a], xl, lo[2 * a + j]);
                hi[2 * a + j] = _mm256_fmadd_ps(wh[a], xh, hi[2 * a + j]);
            }
        }
    }
    if (c < k) {
        const __m256i ml = first_lanes(k - c), mh = first_lanes(k - c - 8);
        __m256 wl[RW_AVX2], wh[RW_AVX2];
        CQ_UNROLL(2)
        for (int a = 0; a < rw; a++) {
            wl[a] = _mm256_maskload_ps(w + a * ldw + c, ml);
            wh[a] = _mm256_maskload_ps(w + a * ldw + c + 8, mh);
        }
        CQ_UNROLL(2)
        for (int j = 0; j < nj; j++) {
            const __m256 xl = _mm256_maskload_ps(x + j * ldx + c, ml), xh = _mm256_maskload_ps(x + j * ldx + c + 8, mh);
            CQ_UNROLL(2)
            for (int a = 0; a < rw; a++) {
                lo[2 * a + j] = _mm256_fmadd_ps(wl[a], xl, lo[2 * a + j]);
                hi[2 * a + j] = _mm256_fmadd_ps(wh[a], xh, hi[2 * a + j]);
            }
        }
    }
    CQ_UNROLL(2)
    for (int j = 0; j < nj; j++) {
        CQ_UNROLL(2)
        for (int a = 0; a < rw; a++) {
            const float s = reduce_avx2(lo[2 * a + j], hi[2 * a + j]);
            float *o = y + j * ldy + a;
            *o = accumulate ? *o + s : s;
        }
    }
}

#define TILE_AVX2_CASE(RW, NJ)                                                                 \
    case (RW) * 8 + (NJ): tile_avx2(w, J->ldw, x, J->ldx, J->k, RW, NJ, y, J->ldy, J->accumulate); break;

static T_AVX2 void rows_avx2(const fjob_t *J, int64_t ra, int64_t rb) {
    for (int64_t r = ra; r < rb; r += RW_AVX2) {
        const int rw = rb - r < RW_AVX2 ? (int)(rb - r) : RW_AVX2;
        const float *w = J->W + r * J->ldw;
        for (int64_t i0 = 0; i0 < J->n; i0 += NX_AVX2) {
            const int nj = J->n - i0 < NX_AVX2 ? (int)(J->n - i0) : NX_AVX2;
            const float *x = J->X + i0 * J->ldx;
            float *y = J->Y + i0 * J->ldy + (r - J->r0);
            switch (rw * 8 + nj) {
                TILE_AVX2_CASE(1, 1) TILE_AVX2_CASE(1, 2) TILE_AVX2_CASE(2, 1)
                default: tile_avx2(w, J->ldw, x, J->ldx, J->k, RW_AVX2, NX_AVX2, y, J->ldy, J->accumulate); break;
            }
        }
    }
}
#endif /* CQ_X86 */

/* ---------------------------------------------------------------- driver */

static rows_fn kernel_for(int level) {
#if CQ_X86
    if (level >= LV_AVX512) return rows_512;
    if (level == LV_AVX2) return rows_avx2;
#endif
    (void)level;
    return rows_port;
}

static void rows_task(void *ctx, int t) {
    const fjob_t *J = (const fjob_t *)ctx;
    const int64_t ra = J->r0 + t * J->chunk, rb = ra + J->chunk < J->r1 ? ra + J->chunk : J->r1;
    J->rows(J, ra, rb);
}

void cq_linear_f32(const float *W, int64_t k, int64_t ldw, int64_t r0, int64_t r1, const float *X, int64_t ldx,
                   int64_t n, float *Y, int64_t ldy, int accumulate) {
    if (k <= 0 || ldw < k || ldx < k || r0 < 0 || r1 <= r0 || n <= 0) return;
    fjob_t J = {W, X, Y, k, ldw, r0, r1, ldx, n, ldy, accumulate != 0, 0, kernel_for(cq_level_())};
    const int64_t rows = r1 - r0;
    const int threads = n * rows * k < PARALLEL_WORK ? 1 : cq_threads();
    if (threads == 1) {
        J.rows(&J, r0, r1);
        return;
    }
    /* A few chunks per thread, claimed dynamically, so a late worker costs little: both threads
     * get work even for ~576-row matrices, and no chunk of a large one exceeds ~1 MB (a worker
     * descheduled on a busy machine then holds up little). Whole 4-row panels. */
    const int64_t want = 4 * (int64_t)threads, cap = (1 << 18) / k;
    int64_t chunk = (rows + want - 1) / want;
    if (chunk > cap) chunk = cap > 0 ? cap : 1;
    J.chunk = (chunk + 3) & ~(int64_t)3;
    cq_parallel_for((int)((rows + J.chunk - 1) / J.chunk), rows_task, &J);
}
