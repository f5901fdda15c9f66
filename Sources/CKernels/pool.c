/* A process-wide pool of worker threads for the parallel loops of Tensors (ck_pool_run in ckernels.h).

   A loop is one "job": the task, its context and its item count, published by bumping a generation
   counter. Items are claimed through one 64-bit atomic holding (generation << 32 | next item), so a worker
   that read a job's fields late can only claim an item while that job is still the current one: its
   compare-and-swap fails as soon as anything changed. After a loop, workers spin (with pause, yielding
   the core to any other runnable thread) for a short while, then sleep on a condition variable; a loop
   started within the spin needs no system call to reach them. */
#include "ckernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define POOL_MAX_WORKERS 255
/* How long an idle worker spins before it sleeps. */
#define POOL_SPIN_NS 200000

static _Atomic uint64_t claim;            /* generation << 32 | next item */
static _Atomic(ck_task) job_task;
static _Atomic(void *) job_context;
static _Atomic uint32_t job_items;
static _Atomic uint32_t job_workers;      /* workers 0 ..< job_workers take part */
static _Atomic uint32_t completed;        /* items finished in the current job */
static _Atomic int busy;                  /* a caller owns the pool */
static _Atomic int sleepers;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;   /* guards started and the sleep */
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static int started;                                            /* workers created so far */

static uint32_t generation_of(uint64_t c) { return (uint32_t)(c >> 32); }

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Claims and runs items of generation gen until none is left or the job changed. */
static void run_items(uint32_t gen) {
    uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
    for (;;) {
        if (generation_of(c) != gen) return;
        uint32_t i = (uint32_t)c;
        ck_task task = atomic_load_explicit(&job_task, memory_order_relaxed);
        void *context = atomic_load_explicit(&job_context, memory_order_relaxed);
        uint32_t n = atomic_load_explicit(&job_items, memory_order_relaxed);
        if (i >= n) return;
        /* Success proves the fields above belong to this job: nothing changed since the load. */
        if (!atomic_compare_exchange_weak_explicit(&claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        task(context, i);
        atomic_fetch_add_explicit(&completed, 1, memory_order_release);
        c = atomic_load_explicit(&claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg;
    uint32_t seen = generation_of(atomic_load_explicit(&claim, memory_order_acquire));
    for (;;) {
        /* Spin for the next generation, then sleep. */
        uint32_t gen = generation_of(atomic_load_explicit(&claim, memory_order_acquire));
        /* Only a worker the last loop used spins: one a smaller thread count left out sleeps at once. */
        if (gen == seen && id < atomic_load_explicit(&job_workers, memory_order_relaxed)) {
            int64_t until = now_ns() + POOL_SPIN_NS;
            for (unsigned spins = 1;; spins++) {
                for (int p = 0; p < 16; p++) CPU_RELAX();
                gen = generation_of(atomic_load_explicit(&claim, memory_order_acquire));
                if (gen != seen) break;
                if ((spins & 15) == 0) {
                    if (now_ns() > until) break;
                    sched_yield();
                }
            }
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool_lock);
            atomic_fetch_add(&sleepers, 1);
            while ((gen = generation_of(atomic_load(&claim))) == seen) pthread_cond_wait(&pool_wake, &pool_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&pool_lock);
        }
        seen = gen;
        if (id < atomic_load_explicit(&job_workers, memory_order_relaxed)) run_items(gen);
    }
    return NULL;
}

/* Starts workers until there are `want` (capped); returns how many there are (possibly more than `want`). */
static uint32_t ensure_workers(uint32_t want) {
    if (want > POOL_MAX_WORKERS) want = POOL_MAX_WORKERS;
    pthread_mutex_lock(&pool_lock);
    while ((uint32_t)started < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(uintptr_t)started);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        started++;
    }
    uint32_t have = (uint32_t)started;
    pthread_mutex_unlock(&pool_lock);
    return have;
}

int ck_pool_run(size_t n, size_t threads, ck_task task, void *context) {
    if (n == 0) return 1;
    if (n > UINT32_MAX - 1) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&busy, &expected, 1)) return 0;
    uint32_t want = threads > 1 ? (uint32_t)(threads - 1 < n - 1 ? threads - 1 : n - 1) : 0;
    uint32_t helpers = want > 0 ? ensure_workers(want) : 0;
    if (helpers > want) helpers = want; /* workers an earlier, larger thread count started stay out */
    atomic_store_explicit(&job_task, task, memory_order_relaxed);
    atomic_store_explicit(&job_context, context, memory_order_relaxed);
    atomic_store_explicit(&job_items, (uint32_t)n, memory_order_relaxed);
    atomic_store_explicit(&job_workers, helpers, memory_order_relaxed);
    atomic_store_explicit(&completed, 0, memory_order_relaxed);
    uint64_t gen = generation_of(atomic_load(&claim)) + 1u;
    /* The fields above are published with the new generation (sequentially consistent, so that the
       sleepers check below and a worker's check before it sleeps cannot both miss each other). */
    atomic_store(&claim, (uint64_t)(uint32_t)gen << 32);
    if (helpers > 0 && atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&pool_lock);
        pthread_cond_broadcast(&pool_wake);
        pthread_mutex_unlock(&pool_lock);
    }
    run_items((uint32_t)gen);
    while (atomic_load_explicit(&completed, memory_order_acquire) < n) CPU_RELAX();
    atomic_store_explicit(&busy, 0, memory_order_release);
    return 1;
}
