#ifndef COPENBLAS_SHIM_H
#define COPENBLAS_SHIM_H

/* OpenBLAS's CBLAS interface (found through pkg-config, or the Debian multiarch symlink). */
#include <cblas.h>

/* Debian's OpenBLAS exports LAPACK's Fortran entry points but ships no LAPACKE header.
   Least-squares solvers used by TeaCache calibration; every argument by pointer, column-major. */
void sgels_(const char *trans, const int *m, const int *n, const int *nrhs, float *a, const int *lda,
            float *b, const int *ldb, float *work, const int *lwork, int *info);
void dgels_(const char *trans, const int *m, const int *n, const int *nrhs, double *a, const int *lda,
            double *b, const int *ldb, double *work, const int *lwork, int *info);

#endif
