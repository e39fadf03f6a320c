// CBLAS: OpenBLAS's CBLAS interface plus its thread and kernel queries.
// Swift imports this header only; SortedKit's BLAS.swift is the one file that calls it.
#ifndef SORTEDTRAIN_CBLAS_SHIM_H
#define SORTEDTRAIN_CBLAS_SHIM_H
#include <cblas.h>
#endif
