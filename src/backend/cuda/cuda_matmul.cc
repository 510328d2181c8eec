#include "backend/cuda/cuda_matmul.h"

#include "backend/cuda/cublaslt_library.h"

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace switchyard::backend::cuda {

namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLASLt {} failed: {} ({})", what, cublaslt().status_string(status),
       cublaslt().status_name(status));
}

cudaDataType_t data_type(MatrixType type) {
  return type == MatrixType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
}

// The largest power of two (up to 256, cuBLASLt's default requirement) dividing the address:
// the heuristic must only offer algorithms that work with the alignment the pointers really have.
uint32_t alignment(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  check_cublas(cublaslt().desc_set_attribute(desc, attribute, &value, sizeof(value)),
               "matmul descriptor");
}

}  // namespace

struct Matmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
  ~Plan() {
    const CublasLt& lt = cublaslt();
    if (a) lt.layout_destroy(a);
    if (b) lt.layout_destroy(b);
    if (d) lt.layout_destroy(d);
    if (desc) lt.desc_destroy(desc);
  }
};

Matmul::Matmul(cudaStream_t stream) : stream_(stream) {
  cublasLtHandle_t handle = nullptr;
  check_cublas(cublaslt().create(&handle), "initialisation");
  handle_ = handle;
  const cudaError_t status = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (status != cudaSuccess) {
    cublaslt().destroy(handle);
    check_cuda(status, "allocation of the 32 MiB cuBLASLt workspace");
  }
  workspace_bytes_ = kWorkspaceBytes;
}

Matmul::~Matmul() {
  for (auto& [key, plan] : plans_) delete plan;
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublaslt().destroy(static_cast<cublasLtHandle_t>(handle_));
}

Matmul::Plan* Matmul::plan_for(const GemmCall& c, const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  auto* plan = new Plan;
  plans_[key] = plan;  // owned from here on, even if planning throws
  check_cublas(cublaslt().desc_create(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
               "matmul descriptor");
  const cublasOperation_t op_a = c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
  if (c.epilogue != Epilogue::kNone) {
    const cublasLtEpilogue_t epilogue =
        c.epilogue == Epilogue::kBias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
             static_cast<int32_t>(data_type(c.bias_type)));
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, c.bias);
    if (c.epilogue == Epilogue::kGeluAuxBias) {
      set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, c.aux);
      set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, static_cast<int64_t>(c.aux_ld));
      set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE,
               static_cast<int32_t>(data_type(c.d_type)));
    }
  }
  // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k when transposed).
  check_cublas(cublaslt().layout_create(&plan->a, data_type(c.a_type), c.trans_a ? c.k : c.m,
                                          c.trans_a ? c.m : c.k, c.lda),
               "matrix layout");
  check_cublas(cublaslt().layout_create(&plan->b, data_type(c.b_type), c.trans_b ? c.n : c.k,
                                          c.trans_b ? c.k : c.n, c.ldb),
               "matrix layout");
  check_cublas(cublaslt().layout_create(&plan->d, data_type(c.d_type), c.m, c.n, c.ldd),
               "matrix layout");

  cublasLtMatmulPreference_t preference = nullptr;
  check_cublas(cublaslt().preference_create(&preference), "matmul preference");
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attribute, auto value) {
    check_cublas(cublaslt().preference_set_attribute(preference, attribute, &value, sizeof(value)),
                 "matmul preference");
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(workspace_bytes_));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(c.a));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(c.b));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(c.d));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(c.d));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublaslt().algo_get_heuristic(
      static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a, plan->b, plan->d, plan->d,
      preference, 1, &result, &found);
  cublaslt().preference_destroy(preference);
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) check_cublas(status, "algorithm search");
  plan->has_algo = status == CUBLAS_STATUS_SUCCESS && found > 0 &&
                   result.state == CUBLAS_STATUS_SUCCESS;
  if (plan->has_algo) plan->algo = result.algo;
  return plan;
}

bool Matmul::run(const GemmCall& c) {
  if (c.m == 0 || c.n == 0) return true;
  const Key key{c.trans_a, c.trans_b, c.m, c.n, c.k, c.lda, c.ldb, c.ldd,
                static_cast<int>(c.a_type), static_cast<int>(c.b_type), static_cast<int>(c.d_type),
                c.beta == 0.0f, static_cast<int>(c.epilogue), c.aux_ld,
                static_cast<int>(alignment(c.a)), static_cast<int>(alignment(c.b)),
                static_cast<int>(alignment(c.d)),
                static_cast<int>(std::min(alignment(c.bias), alignment(c.aux))),
                static_cast<int>(c.bias_type)};
  Plan* plan = plan_for(c, key);
  if (!plan->has_algo) {
    require(c.epilogue != Epilogue::kNone,
            "cuBLASLt has no algorithm for a {}x{}x{} product (transposes {}/{}, leading dimensions "
            "{}/{}/{})",
            c.m, c.n, c.k, c.trans_a, c.trans_b, c.lda, c.ldb, c.ldd);
    return false;
  }
  if (c.epilogue != Epilogue::kNone) {  // pointers change from call to call; the plan does not
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, c.bias);
    if (c.epilogue == Epilogue::kGeluAuxBias) {
      set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, c.aux);
    }
  }
  const float alpha = 1.0f;
  check_cublas(cublaslt().matmul(static_cast<cublasLtHandle_t>(handle_), plan->desc, &alpha, c.a,
                              plan->a, c.b, plan->b, &c.beta, c.d, plan->d, c.d, plan->d,
                              &plan->algo, workspace_, workspace_bytes_, stream_),
               "matmul");
  return true;
}

}  // namespace switchyard::backend::cuda
