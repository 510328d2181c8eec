// cuBLASLt, loaded when the first CUDA backend is created rather than when the program starts.
//
// Linking it would make every Switchyard process, CPU-only runs included, map and relocate a
// 500 MB library (about 200 MB of resident memory and a slower start), and a binary built with
// CUDA would not even start on a machine without cuBLAS. Loaded on demand, a missing library is an
// Error that says what to install.
#pragma once

#include <cublasLt.h>

namespace switchyard::backend::cuda {

// The cuBLASLt entry points the backend uses, resolved from the shared library.
struct CublasLt {
  decltype(&::cublasLtCreate) create;
  decltype(&::cublasLtDestroy) destroy;
  decltype(&::cublasLtGetStatusName) status_name;
  decltype(&::cublasLtGetStatusString) status_string;
  decltype(&::cublasLtMatmul) matmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) algo_get_heuristic;
  decltype(&::cublasLtMatmulDescCreate) desc_create;
  decltype(&::cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&::cublasLtMatmulDescSetAttribute) desc_set_attribute;
  decltype(&::cublasLtMatmulPreferenceCreate) preference_create;
  decltype(&::cublasLtMatmulPreferenceDestroy) preference_destroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) preference_set_attribute;
  decltype(&::cublasLtMatrixLayoutCreate) layout_create;
  decltype(&::cublasLtMatrixLayoutDestroy) layout_destroy;
};

// Loads the library on first use (thread-safe) and returns its entry points; throws Error naming
// the library and the loader's message when it cannot be found or lacks a symbol.
const CublasLt& cublaslt();

}  // namespace switchyard::backend::cuda
