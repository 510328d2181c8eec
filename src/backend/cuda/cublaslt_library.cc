#include "backend/cuda/cublaslt_library.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "core/error.h"

namespace switchyard::backend::cuda {

namespace {

// The soname this build's headers describe, then the toolkit it was built against, then the usual
// install place: /usr/local/cuda/lib64 is often not in the loader's cache.
std::string library_name() { return "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR); }

void* open_library(std::string& errors) {
  std::string candidates[] = {library_name(),
#ifdef SWITCHYARD_CUDA_LIBRARY_DIR
                              std::string(SWITCHYARD_CUDA_LIBRARY_DIR) + "/" + library_name(),
#endif
                              "/usr/local/cuda/lib64/" + library_name()};
  for (const std::string& path : candidates) {
    if (void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    errors += std::string("\n  ") + dlerror();
  }
  return nullptr;
}

template <typename Fn>
void resolve(void* handle, Fn& fn, const char* symbol) {
  fn = reinterpret_cast<Fn>(dlsym(handle, symbol));
  require(fn != nullptr, "cuBLASLt ({}) has no symbol {}: it is older than CUDA {}", library_name(),
          symbol, CUBLAS_VER_MAJOR);
}

CublasLt load() {
  std::string errors;
  void* handle = open_library(errors);
  require(handle != nullptr,
          "cannot load cuBLASLt ({}), which the CUDA backend needs: install the CUDA toolkit's "
          "cuBLAS (or put its lib directory on LD_LIBRARY_PATH); the loader said:{}",
          library_name(), errors);
  CublasLt lt{};
  resolve(handle, lt.create, "cublasLtCreate");
  resolve(handle, lt.destroy, "cublasLtDestroy");
  resolve(handle, lt.status_name, "cublasLtGetStatusName");
  resolve(handle, lt.status_string, "cublasLtGetStatusString");
  resolve(handle, lt.matmul, "cublasLtMatmul");
  resolve(handle, lt.algo_get_heuristic, "cublasLtMatmulAlgoGetHeuristic");
  resolve(handle, lt.desc_create, "cublasLtMatmulDescCreate");
  resolve(handle, lt.desc_destroy, "cublasLtMatmulDescDestroy");
  resolve(handle, lt.desc_set_attribute, "cublasLtMatmulDescSetAttribute");
  resolve(handle, lt.preference_create, "cublasLtMatmulPreferenceCreate");
  resolve(handle, lt.preference_destroy, "cublasLtMatmulPreferenceDestroy");
  resolve(handle, lt.preference_set_attribute, "cublasLtMatmulPreferenceSetAttribute");
  resolve(handle, lt.layout_create, "cublasLtMatrixLayoutCreate");
  resolve(handle, lt.layout_destroy, "cublasLtMatrixLayoutDestroy");
  return lt;  // the library stays loaded for the life of the process
}

}  // namespace

const CublasLt& cublaslt() {
  static std::mutex mutex;
  static bool loaded = false;
  static CublasLt lt;
  std::lock_guard<std::mutex> lock(mutex);
  if (!loaded) {  // a failed load throws and is tried again next time
    lt = load();
    loaded = true;
  }
  return lt;
}

}  // namespace switchyard::backend::cuda
