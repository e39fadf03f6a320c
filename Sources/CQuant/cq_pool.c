/*
 * cq_pool.c: the persistent worker pool behind cq_parallel_for.
 *
 * Why a pool of our own: a decode step makes ~120 matrix multiplies of 5-50 us each, so waking
 * threads per call (GCD, a fresh OpenMP team) costs a large share of the work. Workers here spin
 * for a short while after each job, so back-to-back calls find them awake, then sleep on a
 * condition variable, so an idle process burns no CPU.
 *
 * A job is one 64-bit word, claim = tasks << 32 | next: a thread takes task `next` with a CAS to
 * next + 1. The word alone says which tasks are left, so a thread holding a stale copy either
 * fails its CAS or (if a later job happens to have the same word) takes a task that really is
 * free in the live job. fn and ctx are read only after a successful claim, and the dispatcher
 * does not replace them until every claimed task has reported done, so they are the live job's.
 * The dispatching thread runs tasks too, then waits for `done` to reach the task count.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity */
#endif
#include "cq_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* How long an idle worker spins before it sleeps: longer than the gap between the matrix
 * multiplies of one decode step, short enough not to matter to anyone else. */
#define SPIN_NS 200000

static pthread_mutex_t g_dispatch = PTHREAD_MUTEX_INITIALIZER; /* one job (or resize) at a time */
static pthread_mutex_t g_sleep = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;

static uint64_t g_claim;        /* the live job: tasks << 32 | next task */
static uint32_t g_done;         /* tasks of the live job finished */
static uint32_t g_seq;          /* bumped per job and to quit: what idle workers watch */
static int g_sleepers;          /* workers waiting on g_wake */
static int g_quit;
static void (*g_fn)(void *, int);
static void *g_ctx;

static int g_threads;           /* threads per job, the caller included; 0: not chosen yet */
static int g_workers;           /* worker threads running (g_threads - 1 once started) */
static pthread_t *g_worker_ids;

/* Set in workers, and in a dispatching thread while its job runs: a nested call runs serially. */
static __thread int t_in_pool;

static inline void cpu_relax(void) {
#if CQ_X86
    _mm_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int default_threads(void) {
    const char *env = getenv("CQ_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int claim_task(int *task) {
    uint64_t c = __atomic_load_n(&g_claim, __ATOMIC_ACQUIRE);
    for (;;) {
        const uint32_t next = (uint32_t)c, tasks = (uint32_t)(c >> 32);
        if (next >= tasks) return 0;
        if (__atomic_compare_exchange_n(&g_claim, &c, c + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            *task = (int)next;
            return 1;
        }
    }
}

static void run_tasks(void) {
    int task;
    while (claim_task(&task)) {
        void (*fn)(void *, int) = __atomic_load_n(&g_fn, __ATOMIC_RELAXED);
        fn(__atomic_load_n(&g_ctx, __ATOMIC_RELAXED), task);
        __atomic_fetch_add(&g_done, 1, __ATOMIC_RELEASE);
    }
}

static void *worker_main(void *arg) {
    uint32_t seen = (uint32_t)(uintptr_t)arg;
    t_in_pool = 1;
    for (;;) {
        uint32_t s = __atomic_load_n(&g_seq, __ATOMIC_ACQUIRE);
        if (s == seen) {
            const int64_t until = now_ns() + SPIN_NS;
            for (int i = 1; (s = __atomic_load_n(&g_seq, __ATOMIC_ACQUIRE)) == seen; i++) {
                cpu_relax();
                if (i % 64 == 0 && now_ns() > until) break;
                /* Let another runnable thread (GCD's, OpenBLAS's) have this core meanwhile. */
                if (i % 256 == 0) sched_yield();
            }
        }
        if (s == seen) {
            /* Sleep. The dispatcher bumps g_seq, then reads g_sleepers (both seq_cst); we bump
             * g_sleepers, then read g_seq: one of us sees the other's write. */
            pthread_mutex_lock(&g_sleep);
            __atomic_fetch_add(&g_sleepers, 1, __ATOMIC_SEQ_CST);
            while ((s = __atomic_load_n(&g_seq, __ATOMIC_SEQ_CST)) == seen) pthread_cond_wait(&g_wake, &g_sleep);
            __atomic_fetch_sub(&g_sleepers, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&g_sleep);
        }
        seen = s;
        if (__atomic_load_n(&g_quit, __ATOMIC_ACQUIRE)) return NULL;
        run_tasks();
    }
}

static void wake_workers(void) {
    __atomic_fetch_add(&g_seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g_sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&g_sleep);
        pthread_cond_broadcast(&g_wake);
        pthread_mutex_unlock(&g_sleep);
    }
}

/* With g_dispatch held. */
static void stop_workers(void) {
    if (g_workers == 0) return;
    __atomic_store_n(&g_quit, 1, __ATOMIC_RELEASE);
    wake_workers();
    for (int i = 0; i < g_workers; i++) pthread_join(g_worker_ids[i], NULL);
    free(g_worker_ids);
    g_worker_ids = NULL;
    g_workers = 0;
    __atomic_store_n(&g_quit, 0, __ATOMIC_RELEASE);
}

/* With g_dispatch held: the workers for g_threads, if not running yet. */
static void start_workers(void) {
    if (g_threads == 0) __atomic_store_n(&g_threads, default_threads(), __ATOMIC_RELAXED);
    if (g_workers == g_threads - 1) return;
    stop_workers();
    g_worker_ids = (pthread_t *)calloc((size_t)g_threads, sizeof(pthread_t));
    if (g_worker_ids == NULL) {
        __atomic_store_n(&g_threads, 1, __ATOMIC_RELAXED);
        return;
    }
    const uint32_t seq = __atomic_load_n(&g_seq, __ATOMIC_ACQUIRE);
    for (int i = 0; i < g_threads - 1; i++) {
        if (pthread_create(&g_worker_ids[g_workers], NULL, worker_main, (void *)(uintptr_t)seq) != 0) break;
        g_workers++;
    }
    __atomic_store_n(&g_threads, g_workers + 1, __ATOMIC_RELAXED); /* fewer if refused: still correct */
}

void cq_set_threads(int n) {
    pthread_mutex_lock(&g_dispatch);
    const int want = n > 0 ? n : default_threads();
    if (want != g_threads) {
        stop_workers();
        __atomic_store_n(&g_threads, want, __ATOMIC_RELAXED); /* workers start with the next job */
    }
    pthread_mutex_unlock(&g_dispatch);
}

int cq_threads(void) {
    /* cq_linear asks on every call: no lock once chosen (a resize racing with this is benign) */
    const int chosen = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    if (chosen > 0) return chosen;
    pthread_mutex_lock(&g_dispatch);
    if (g_threads == 0) __atomic_store_n(&g_threads, default_threads(), __ATOMIC_RELAXED);
    const int n = g_threads;
    pthread_mutex_unlock(&g_dispatch);
    return n;
}

void cq_parallel_for(int tasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (tasks <= 0) return;
    if (tasks == 1 || t_in_pool) {
        for (int t = 0; t < tasks; t++) fn(ctx, t);
        return;
    }
    pthread_mutex_lock(&g_dispatch);
    start_workers();
    if (g_workers == 0) {
        pthread_mutex_unlock(&g_dispatch);
        for (int t = 0; t < tasks; t++) fn(ctx, t);
        return;
    }
    t_in_pool = 1;
    __atomic_store_n(&g_fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&g_ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&g_done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_claim, (uint64_t)(uint32_t)tasks << 32, __ATOMIC_RELEASE);
    wake_workers();
    run_tasks();
    while (__atomic_load_n(&g_done, __ATOMIC_ACQUIRE) < (uint32_t)tasks) cpu_relax();
    t_in_pool = 0;
    pthread_mutex_unlock(&g_dispatch);
}
