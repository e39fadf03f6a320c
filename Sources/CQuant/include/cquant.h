/*
 * cquant: quantized matrix kernels in the GGUF / llama.cpp block formats.
 *
 * Formats (blocks of CQ_BLOCK = 32 consecutive weights along a row; byte layouts are packed and
 * little-endian; "fp16" is an IEEE half):
 *   Q8_0 (34 bytes): fp16 d, int8 qs[32];               value[i] = d * qs[i]
 *   Q4_0 (18 bytes): fp16 d, uint8 qs[16];              value[j] = d * ((qs[j] & 15) - 8),
 *                                                       value[j + 16] = d * ((qs[j] >> 4) - 8)
 *   Q4_1 (20 bytes): fp16 d, fp16 m, uint8 qs[16];      same nibble order, value = d * nibble + m
 *   Q8_1 (40 bytes): float d, float s, int8 qs[32];     activations for Q4_1 weights, s = d * sum(qs).
 *       NOTE: llama.cpp's block_q8_1 stores d and s as fp16 (36 bytes); this library's Q8_1 is an
 *       internal activation format with float d and s, not interchangeable with GGUF Q8_1 data.
 * Q8_0, Q4_0 and Q4_1 rows are byte-identical to GGUF tensor rows of those types.
 *
 * Conventions for every function below:
 *   - k (elements per row) must be a positive multiple of 32 (cq_linear_f32: any k > 0);
 *     otherwise the row-size functions return 0 and the other functions return without touching
 *     their outputs.
 *   - Pointers need no particular alignment (all loads are unaligned-safe).
 *   - Inputs to the quantizers must be finite (Q8_0 activations also |x| < ~8e6, so d fits fp16).
 *   - All functions are reentrant and thread-safe. Global state: the kernel choice (see
 *     cq_set_portable), best set before worker threads start; the thread pool (cq_parallel_for);
 *     cq_linear's per-thread activation scratch (grown as needed, freed at thread exit). The
 *     cq_matmul_* functions keep their activation scales in a 16 KB stack buffer, or a malloc'ed
 *     one for k * min(n, 16) > 65536.
 *   - Build the sources optimized (-O2): at -O0 the kernels run ~50x slower.
 *   - Dependencies: libc (malloc, free, memcpy, strcmp), pthreads and, on x86-64, the compiler
 *     runtime behind __builtin_cpu_supports (libgcc / compiler-rt); no libm.
 */
#ifndef CQUANT_H
#define CQUANT_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { CQ_BLOCK = 32 };

/* Bytes in one Q8_0 row of k elements (k / 32 * 34), 0 if k is not a positive multiple of 32. */
size_t cq_row_bytes_q8_0(int64_t k);
/* Bytes in one Q4_0 row of k elements (k / 32 * 18), 0 if k is not a positive multiple of 32. */
size_t cq_row_bytes_q4_0(int64_t k);
/* Bytes in one Q4_1 row of k elements (k / 32 * 20), 0 if k is not a positive multiple of 32. */
size_t cq_row_bytes_q4_1(int64_t k);
/* Bytes in one (float-scaled, see above) Q8_1 row of k elements (k / 32 * 40), 0 if k is invalid. */
size_t cq_row_bytes_q8_1(int64_t k);

/* Quantize k floats to Q8_0 like llama.cpp: d = max|x| / 127, q = round(x * (1/d)) (0 when d == 0); weights and activations. */
void cq_quantize_row_q8_0(const float *x, void *y, int64_t k);
/* Quantize k floats (activations for Q4_1 matmuls) to Q8_1: as Q8_0 with float d, plus s = d * sum(q). */
void cq_quantize_row_q8_1(const float *x, void *y, int64_t k);
/* Quantize k floats to Q4_0 like llama.cpp's quantize_row_q4_0_ref (d = signed max-magnitude / -8). */
void cq_quantize_row_q4_0(const float *x, void *y, int64_t k);
/* Quantize k floats to Q4_1 like llama.cpp's quantize_row_q4_1_ref (d = (max - min) / 15, m = min). */
void cq_quantize_row_q4_1(const float *x, void *y, int64_t k);

/* Dequantize one Q8_0 row of k elements to floats. */
void cq_dequantize_row_q8_0(const void *x, float *y, int64_t k);
/* Dequantize one Q4_0 row of k elements to floats. */
void cq_dequantize_row_q4_0(const void *x, float *y, int64_t k);
/* Dequantize one Q4_1 row of k elements to floats. */
void cq_dequantize_row_q4_1(const void *x, float *y, int64_t k);

/*
 * Matmuls: for r in [0, rows), i in [0, n):
 *     Y[i * ldy + r] = dot(W row r, Xq row i)        (accumulate == 0)
 *     Y[i * ldy + r] += dot(W row r, Xq row i)       (accumulate != 0)
 * W: `rows` consecutive quantized rows of k elements (cq_row_bytes_*(k) bytes each).
 * Xq: n consecutive activation rows, quantized with cq_quantize_row_q8_0 (for Q8_0 and Q4_0
 * weights) or cq_quantize_row_q8_1 (for Q4_1 weights). Y must not overlap W or Xq; ldy >= rows
 * when n > 1. Each W byte is streamed from memory once per call for n <= 16 (n is tiled beyond).
 * To split the work across threads, give each thread a disjoint row range: W advanced by
 * r0 * cq_row_bytes_*(k), Y advanced by r0, rows = the range length, same Xq, ldy and n; results
 * are bit-identical to a single call. Paths differ from each other only by float rounding.
 */
/* Q8_0 weights times Q8_0 activations. */
void cq_matmul_q8_0(const void *W, const void *Xq, float *Y, int64_t k, int64_t rows, int64_t n,
                    int64_t ldy, int accumulate);
/* Q4_0 weights times Q8_0 activations. */
void cq_matmul_q4_0(const void *W, const void *Xq, float *Y, int64_t k, int64_t rows, int64_t n,
                    int64_t ldy, int accumulate);
/* Q4_1 weights times Q8_1 activations. */
void cq_matmul_q4_1(const void *W, const void *Xq, float *Y, int64_t k, int64_t rows, int64_t n,
                    int64_t ldy, int accumulate);

/*
 * Packed matrices and cq_linear: the fast path for a weight matrix multiplied many times.
 *
 * A packed matrix holds the same blocks as `rows` GGUF rows of k elements, regrouped so that the
 * kernels read 16 rows at once (panels of 16 rows; see cq_linear.c for the byte layout); it takes
 * cq_packed_bytes bytes (rows rounded up to 16; padding rows should be zero, e.g. calloc). Fill
 * it with cq_pack_row; rows may be packed in any order and from different threads.
 * format: CQ_Q8_0, CQ_Q4_0 or CQ_Q4_1.
 */
enum { CQ_Q8_0 = 0, CQ_Q4_0 = 1, CQ_Q4_1 = 2 };

/* Bytes of a packed matrix (0 if k or format is invalid). */
size_t cq_packed_bytes(int format, int64_t k, int64_t rows);
/* Stores `row` (one GGUF row of k elements in `format`, cq_row_bytes_*(k) bytes) as row r of P. */
void cq_pack_row(int format, void *P, int64_t k, int64_t r, const void *row);
/* Row r of P back as a GGUF row (the bytes cq_pack_row was given). */
void cq_unpack_row(int format, const void *P, int64_t k, int64_t r, void *row);
/* Row r of P dequantized to k floats (what cq_dequantize_row_* gives for the GGUF row). */
void cq_dequantize_packed_row(int format, const void *P, int64_t k, int64_t r, float *y);

/*
 * One matrix multiply on a packed matrix: for r in [r0, r1), i in [0, n):
 *     Y[i * ldy + (r - r0)]  = dot(W row r, Xq row i)       (accumulate == 0)
 *     Y[i * ldy + (r - r0)] += dot(W row r, Xq row i)       (accumulate != 0)
 * where Xq row i is X[i * ldx ... + k) quantized per block exactly as cq_quantize_row_q8_0
 * (Q8_0 / Q4_0 weights) or cq_quantize_row_q8_1 (Q4_1) would. The call quantizes X into scratch
 * of the calling thread (reused across calls), then splits the rows of W over the thread pool.
 * 0 <= r0 < r1 <= the rows P was sized for; Y must not overlap P or X; ldy >= r1 - r0 when n > 1.
 * If the scratch cannot be allocated, Y is left untouched.
 * Exactness: each element depends only on its weight row, its activation row and the kernel
 * path, never on n, r0 / r1 or the thread count: the SIMD paths all give the same bits, and the
 * portable path differs from them only by float rounding.
 */
void cq_linear(int format, const void *P, int64_t k, int64_t r0, int64_t r1, const float *X, int64_t ldx,
               int64_t n, float *Y, int64_t ldy, int accumulate);

/*
 * float32 weights times a few activation rows (the "skinny" matmul; for n <= 16 each weight byte
 * is read from memory once per call, in place: W is not packed or copied). For r in [r0, r1),
 * i in [0, n):
 *     Y[i * ldy + (r - r0)]  = dot(W row r, X row i)       (accumulate == 0)
 *     Y[i * ldy + (r - r0)] += dot(W row r, X row i)       (accumulate != 0)
 * where W row r is W[r * ldw ... + k) and X row i is X[i * ldx ... + k). Unlike the block
 * formats, any k > 0 works; ldw >= k and ldx >= k; Y must not overlap W or X; ldy >= r1 - r0
 * when n > 1. Invalid arguments return without touching Y. Rows are split over the thread pool.
 * Exactness: each element depends only on its weight row, its activation row and the kernel
 * path, never on n, on the other rows, on r0 / r1 or on the thread count (every tile sums the
 * same 16 lanes along k in the same order and reduces them by the same tree): the SIMD paths
 * (AVX2, AVX-512) all give the same bits, the portable path differs from them only by float
 * rounding (no fma).
 */
void cq_linear_f32(const float *W, int64_t k, int64_t ldw, int64_t r0, int64_t r1, const float *X, int64_t ldx,
                   int64_t n, float *Y, int64_t ldy, int accumulate);

/*
 * The thread pool: cq_parallel_for runs fn(ctx, t) for every t in [0, tasks), on the calling
 * thread and the pool's persistent workers, and returns when all are done (tasks are claimed
 * dynamically, in no particular order). Workers spin briefly after a job, then sleep, so an idle
 * process uses no CPU. Calls from different threads are serialized; a call made from inside a
 * task runs its tasks serially on that thread. fn must not block on another thread's
 * cq_parallel_for.
 */
void cq_parallel_for(int tasks, void (*fn)(void *ctx, int task), void *ctx);
/* Threads per job, the caller included: n > 0, or n <= 0 for the default (the environment's
 * CQ_THREADS if set, else the CPUs this process may run on). Waits for a running job; not to be
 * called from inside a task. */
void cq_set_threads(int n);
/* Threads per job, the caller included. */
int cq_threads(void);

/* Kernels the matmuls currently use: "avx512-vnni", "avx512", "avx2" or "portable". */
const char *cq_kernel_name(void);
/* 1: force the portable C kernels (for comparing paths in tests); 0: back to the CPU's best. */
void cq_set_portable(int on);
/* Test hook: force the named kernels (as cq_kernel_name spells them) if this CPU supports them; returns 1 on success, 0 otherwise (no change). NULL or "" restores the CPU's best. */
int cq_select_kernel(const char *name);

/* fp16 (IEEE half bits) to float, exact for every input (NaN payloads kept). */
float cq_fp16_to_fp32(uint16_t h);
/* float to fp16 (IEEE half bits), round-to-nearest-even, overflow to infinity, NaN stays NaN. */
uint16_t cq_fp32_to_fp16(float f);

/*
 * bfloat16 GEMM tiles (cq_bf16.c): bfloat16 inputs, float32 accumulation and output, on the
 * CPU's AVX512_BF16 units (vdpbf16ps) when it has them, else portable C. Made for the small
 * GEMMs of attention tiles (m, n <= 256, k = head dim or key-tile width); one call is one tile
 * on the calling thread (no threads, no allocation; reentrant).
 *
 * bfloat16 values are uint16_t bit patterns (the top half of a float32). float -> bfloat16 is
 * round to nearest, ties to even, a NaN staying a quiet NaN ((bits >> 16) | 0x40): the same bits
 * as SortedKit's BFloat16.round for every input (subnormals included).
 *
 * Layouts:
 *   A (m x k), row-major: A[i][kk] at A[i * lda + kk]. lda must be even and >= k rounded up to
 *     even (kpad); for odd k the pad column kk = k must be zero (cq_bf16_pack_a writes it).
 *   B (k x n), packed in pairs of rows ("VNNI"): with npad = n rounded up to a multiple of 32
 *     and k2 = (k + 1) / 2, B[kk][j] is at B[((kk / 2) * npad + j) * 2 + kk % 2]; every element
 *     with kk >= k or j >= n is zero. cq_bf16_packed_b_count(k, n) = k2 * npad * 2 elements.
 * No alignment is required; 64-byte aligned A, B (and lda a multiple of 32) is a little faster.
 * Kernel choice: the AVX512_BF16 GEMM when the CPU has it and the CQuant kernel level is not
 * forced below AVX-512 (cq_set_portable(1), cq_select_kernel("portable"/"avx2") select the
 * portable GEMM); see cq_bf16_kernel_name. The packs give identical bits on every path.
 */

/* uint16_t elements of a packed B of k x n: ((k + 1) / 2) * npad * 2, npad = n rounded up to 32
 * (0 if k <= 0 or n <= 0). */
size_t cq_bf16_packed_b_count(int64_t k, int64_t n);

/* Packs the k x n matrix B[kk][j] = transposed ? src[j * ld + kk] : src[kk * ld + j], rounded to
 * bfloat16, into dst (cq_bf16_packed_b_count(k, n) elements, all written: padding zeroed).
 * k > 0 and n > 0, else nothing is written. */
void cq_bf16_pack_b(const float *src, int64_t ld, int transposed, int64_t k, int64_t n, uint16_t *dst);

/* Packs the m x k matrix A[i][kk] = transposed ? src[kk * ld + i] : src[i * ld + kk], rounded to
 * bfloat16, row-major into dst[i * ldd + kk] for kk < kpad (k rounded up to even; the pad column
 * of an odd k is written zero; columns kpad..ldd-1 are not touched). ldd >= kpad (and even, for
 * cq_bf16_gemm); m > 0, k > 0; otherwise nothing is written. */
void cq_bf16_pack_a(const float *src, int64_t ld, int transposed, int64_t m, int64_t k, uint16_t *dst,
                    int64_t ldd);

/*
 * C[i * ldc + j] = alpha * sum_kk A[i][kk] * B[kk][j] + beta * C[i * ldc + j], for i < m, j < n:
 * A as cq_bf16_pack_a writes it (lda even, >= kpad, pad column zero), B as cq_bf16_pack_b wrote
 * it for some k' >= k and ldb >= n columns: the product takes B's first k rows and first n
 * columns (a causal tile's visible part of a packed key tile). When k < k' and k is odd, row k
 * of B meets A's zero pad column, so it must be finite. beta == 0: C is only written (old
 * contents, NaN included, are ignored). Only C[i * ldc + j] for i < m, j < n is touched; C must
 * not overlap A or B. k == 0 gives C = beta * C. Invalid arguments (m <= 0, n <= 0, k < 0,
 * ldb < n, odd or too small lda) do nothing.
 * Accuracy: each bf16 product is exact in float32; the sum over kk is accumulated in float32 in
 * increasing kk, so |error| <= ~(k + 2) * 2^-24 * (|alpha| sum |a * b| + |beta * C|). The paths
 * differ only by rounding (and the AVX512_BF16 path treats values below 2^-126 as zero).
 */
void cq_bf16_gemm(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *A, int64_t lda,
                  const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* The GEMM path cq_bf16_gemm uses now: "avx512-bf16" or "portable". */
const char *cq_bf16_kernel_name(void);

/* x[i] = exp(x[i] - shift) for i < n, in place; returns the sum of the results (cq_exp.c: the
 * Cephes expf polynomial, relative error about 2e-7; inputs clamped to [-87, 88], so -inf gives
 * about 1.6e-38 and nothing gives NaN but a NaN). AVX-512, AVX2 (with FMA) or portable, by the
 * CQuant kernel level; the paths differ only by rounding. */
float cq_exp_shifted_f32(float *x, int64_t n, float shift);

#ifdef __cplusplus
}
#endif

#endif /* CQUANT_H */
