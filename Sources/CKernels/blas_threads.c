#define _GNU_SOURCE
#include "ckernels.h"
#include <dlfcn.h>
#include <stdlib.h>

/* OpenBLAS's pthread workers spin (yielding) for 2^28 cycles after each call before they sleep. While
   they spin they compete for the cores with the element-wise loops run between BLAS calls, which makes
   a DiT forward both slower and noisy. OpenBLAS reads OPENBLAS_THREAD_TIMEOUT only when its thread
   server starts, so this sets it (unless the user already did) and restarts the server, through
   symbols looked up at run time: a BLAS without them is left untouched. */
int ck_openblas_short_spin(void) {
    if (getenv("OPENBLAS_THREAD_TIMEOUT") != NULL) return 0;
    void (*read_env)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "openblas_read_env");
    int (*shutdown)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    int (*init)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_init");
    if (read_env == NULL || shutdown == NULL || init == NULL) return 0;
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
    read_env();
    shutdown();
    init();
    return 1;
}
