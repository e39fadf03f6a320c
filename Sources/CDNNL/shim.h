// CDNNL: oneDNN's C API (Debian's libdnnl-dev), for bf16 matrix multiplication.
// Swift imports this header only; SortedKit's BF16Matmul.swift is the one file that calls it.
#ifndef SORTEDTRAIN_CDNNL_SHIM_H
#define SORTEDTRAIN_CDNNL_SHIM_H
#include <oneapi/dnnl/dnnl.h>
#endif
