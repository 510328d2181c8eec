// CudaBackend's ops: check the operands as cpu_ops.cc does, then queue the kernels, or run the CPU
// reference on the host for forms the kernels do not handle.
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/cross_entropy_kernels.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/encoder_kernels.h"
#include "backend/cuda/layernorm_kernels.h"
#include "backend/cuda/optimizer_kernels.h"
#include "backend/cuda/paged_attention_kernels.h"
#include "backend/host_fallback.h"
#include "core/error.h"

namespace switchyard::backend::cuda {
namespace {

// ---- operand checks: each names the op and the operand ----

struct Operands {
  const char* op;
  DType activations;  // the device's activation dtype

  void present(const Tensor& t, const char* what) const {
    require(!t.empty(), "cuda {}: {} is missing", op, what);
  }
  void dtype(const Tensor& t, DType want, const char* what) const {
    present(t, what);
    require(t.dtype == want, "cuda {}: {} must be {}, got {}", op, what, dtype_name(want),
            t.describe());
  }
  void dense(const Tensor& t, const char* what) const {
    require(t.is_contiguous(), "cuda {}: {} must be dense, got {}", op, what, t.describe());
  }
  // An activation of the device's dtype, possibly a strided view.
  void act_view(const Tensor& t, const char* what) const {
    present(t, what);
    require(t.dtype == activations,
            "cuda {}: {} must be {}, the device's activation dtype (Backend::precision()), got {}",
            op, what, dtype_name(activations), t.describe());
  }
  // A dense activation.
  void* act(const Tensor& t, const char* what) const {
    act_view(t, what);
    dense(t, what);
    return t.data;
  }
  template <typename T>
  T* typed(const Tensor& t, DType want, const char* what) const {
    dtype(t, want, what);
    dense(t, what);
    return static_cast<T*>(t.data);
  }
  float* f32(const Tensor& t, const char* what) const { return typed<float>(t, DType::kF32, what); }
  float* optional_f32(const Tensor& t, const char* what) const {
    return t.empty() ? nullptr : f32(t, what);
  }
  const int32_t* i32(const Tensor& t, const char* what) const {
    return typed<const int32_t>(t, DType::kI32, what);
  }
  double* f64(const Tensor& t, const char* what) const {
    return typed<double>(t, DType::kF64, what);
  }
  // [rows, cols], checked against what the other operands imply (-1: not yet known).
  void matrix(const Tensor& t, int64_t rows, int64_t cols, const char* what) const {
    present(t, what);
    require(t.rank == 2 && (rows < 0 || t.shape[0] == rows) && (cols < 0 || t.shape[1] == cols),
            "cuda {}: {} must be [{}, {}], got {}", op, what, rows < 0 ? "*" : std::to_string(rows),
            cols < 0 ? "*" : std::to_string(cols), t.describe());
  }
  void numel(const Tensor& t, int64_t n, const char* what) const {
    present(t, what);
    require(t.numel() == n, "cuda {}: {} must have {} elements, got {}", op, what, n,
            t.describe());
  }
  int to_int(int64_t n, const char* what) const {
    require(n >= 0 && n <= INT_MAX, "cuda {}: {} has {} elements along a dimension, more than {}",
            op, what, n, INT_MAX);
    return static_cast<int>(n);
  }
};

// Bytes from a tensor's first element to the end of its last.
size_t extent_bytes(const Tensor& t) {
  int64_t last = 0;
  for (int d = 0; d < t.rank; ++d) last += (t.shape[d] - 1) * t.strides[d];
  return static_cast<size_t>(last + 1) * static_cast<size_t>(dtype_bytes(t.dtype));
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.empty() || b.empty() || a.numel() == 0 || b.numel() == 0) return false;
  const char* pa = static_cast<const char*>(a.data);
  const char* pb = static_cast<const char*>(b.data);
  return pa < pb + extent_bytes(b) && pb < pa + extent_bytes(a);
}

// ---- attention forms the flash kernels run ----

// Full causal multi-head attention at 1/sqrt(head_dim), with a head size the kernels are built
// for: GPT-2's attention.
bool flash_spec(const ops::AttentionSpec& s) {
  const float default_scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  return s.heads > 0 && s.kv_heads == s.heads && s.window == 0 && s.head_dim >= 1 &&
         s.head_dim <= kAttentionMaxHeadSize && (s.scale == 0.0f || s.scale == default_scale);
}

// The start of GPT-2's packed projection [rows, 3C] when q, k and v are its [rows, heads,
// head_dim] views (row stride 3C, k at column C, v at 2C), else nullptr. Dtypes are checked by
// the caller.
const void* packed_qkv(const Tensor& q, const Tensor& k, const Tensor& v, int64_t rows,
                       const ops::AttentionSpec& spec) {
  const int64_t hd = spec.head_dim, C = static_cast<int64_t>(spec.heads) * hd;
  for (const Tensor* t : {&q, &k, &v}) {
    const bool view = t->rank == 3 && t->shape[0] == rows && t->shape[1] == spec.heads &&
                      t->shape[2] == hd && t->strides[0] == 3 * C && t->strides[1] == hd &&
                      t->strides[2] == 1;
    if (!view) return nullptr;
  }
  const int64_t element = dtype_bytes(q.dtype);
  const char* base = static_cast<const char*>(q.data);
  if (static_cast<const char*>(k.data) != base + C * element ||
      static_cast<const char*>(v.data) != base + 2 * C * element) {
    return nullptr;
  }
  return q.data;
}

// A dense [rows, cols] activation (attention outputs and their gradients).
bool dense_matrix(const Tensor& t, int64_t rows, int64_t cols) {
  return t.rank == 2 && t.shape[0] == rows && t.shape[1] == cols && t.is_contiguous();
}

// A view [rows, heads, head_dim] whose heads are dense (rows may be strided).
void require_heads_view(const Operands& o, const Tensor& t, int64_t rows, int heads, int head_dim,
                        const char* what) {
  o.act_view(t, what);
  require(t.rank == 3 && t.shape[0] == rows && t.shape[1] == heads && t.shape[2] == head_dim &&
              t.strides[2] == 1 && t.strides[1] == head_dim &&
              t.strides[0] >= static_cast<int64_t>(heads) * head_dim,
          "cuda {}: {} must be a [{}, {}, {}] view with dense heads, got {}", o.op, what, rows,
          heads, head_dim, t.describe());
}

void require_spec(const ops::AttentionSpec& spec, const char* op) {
  require(spec.heads > 0 && spec.kv_heads > 0 && spec.head_dim > 0 &&
              spec.heads % spec.kv_heads == 0 && spec.window >= 0,
          "cuda {}: heads {} must be a positive multiple of kv_heads {}, head_dim {} positive and "
          "window {} >= 0",
          op, spec.heads, spec.kv_heads, spec.head_dim, spec.window);
}

// [blocks, block_size, kv_heads, head_dim], dense.
void require_cache(const Operands& o, const Tensor& cache, int kv_heads, int head_dim,
                   const char* what) {
  o.act(cache, what);
  require(cache.rank == 4 && cache.shape[1] > 0 && cache.shape[2] == kv_heads &&
              cache.shape[3] == head_dim,
          "cuda {}: {} must be [blocks, block_size, {}, {}], got {}", o.op, what, kv_heads,
          head_dim, cache.describe());
}

}  // namespace

// Calls its body with Act = bf16 or float, as the precision says.
#define SWITCHYARD_WITH_ACT(...) \
  do {                           \
    if (bf16_mode()) {           \
      using Act = bf16;          \
      __VA_ARGS__;               \
    } else {                     \
      using Act = float;         \
      __VA_ARGS__;               \
    }                            \
  } while (0)

// ---- what runs natively ----

size_t CudaBackend::attention_record_floats(const ops::AttentionSpec& spec, int batch,
                                            int seq) const {
  if (!flash_spec(spec)) return Backend::attention_record_floats(spec, batch, seq);
  return static_cast<size_t>(batch) * spec.heads * seq;  // the log-sum-exp of each query row
}

size_t CudaBackend::attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                             int seq) const {
  if (!flash_spec(spec)) return Backend::attention_scratch_floats(spec, batch, seq);
  return (attention_backward_workspace_bytes(batch, seq, spec.heads) + sizeof(float) - 1) /
         sizeof(float);
}

bool CudaBackend::supports(OpKind kind, std::span<const DType> dtypes) const {
  // One letter per operand in for_each_tensor order: A activation (and matmul weights), F fp32,
  // I int32, D fp64, B bf16; lower case marks an optional operand, which may also be absent (an
  // empty Tensor reads as fp32).
  const char* pattern = nullptr;
  switch (kind) {
    case OpKind::kEmbedding: pattern = "AIFif"; break;
    case OpKind::kEmbeddingBackward: pattern = "FfAIi"; break;
    case OpKind::kLayerNorm: pattern = "AFFAFF"; break;
    case OpKind::kLayerNormBackward: pattern = "AFFAAFFF"; break;
    case OpKind::kAddLayerNorm: pattern = "AAFFAAFF"; break;
    case OpKind::kLinear: pattern = "AAAf"; break;
    case OpKind::kLinearBackward: pattern = "aFfAAA"; break;
    case OpKind::kLinearGelu: pattern = "AAAAf"; break;
    case OpKind::kGelu: pattern = "AA"; break;
    case OpKind::kGeluBackward: pattern = "AAA"; break;
    case OpKind::kAdd: pattern = "AAA"; break;
    case OpKind::kAccumulate: pattern = "AA"; break;
    case OpKind::kAttention: pattern = "AFAAAf"; break;
    case OpKind::kAttentionBackward: pattern = "AAAfFAAFAAAf"; break;
    case OpKind::kKvCacheWrite: pattern = "AAAAI"; break;
    case OpKind::kPagedAttention: pattern = "AAAAIIIf"; break;
    case OpKind::kAttentionDecode: pattern = "AAAAAA"; break;
    case OpKind::kCrossEntropy: pattern = "FAI"; break;
    case OpKind::kCrossEntropyBackward: pattern = "AAI"; break;
    case OpKind::kSumOfSquares: pattern = "DF"; break;
    case OpKind::kAccumulateSum: pattern = "DF"; break;
    case OpKind::kAdamW: pattern = "FFFFdb"; break;
    case OpKind::kCast: {
      auto float_type = [](DType d) { return d == DType::kF32 || d == DType::kBF16; };
      return dtypes.size() == 2 && float_type(dtypes[0]) && float_type(dtypes[1]);
    }
  }
  if (pattern == nullptr || std::strlen(pattern) != dtypes.size()) return false;
  for (size_t i = 0; i < dtypes.size(); ++i) {
    const char letter = pattern[i];
    const bool optional = std::islower(static_cast<unsigned char>(letter)) != 0;
    DType want = DType::kF32;
    switch (std::toupper(static_cast<unsigned char>(letter))) {
      case 'A': want = activation_dtype(); break;
      case 'F': want = DType::kF32; break;
      case 'I': want = DType::kI32; break;
      case 'D': want = DType::kF64; break;
      case 'B': want = DType::kBF16; break;
    }
    if (dtypes[i] != want && !(optional && dtypes[i] == DType::kF32)) return false;
  }
  return true;
}

// ---- embeddings ----

void CudaBackend::run(const ops::Embedding& op) {
  const Operands o{"embedding", activation_dtype()};
  o.act(op.out, "out");
  // A gather of activations reads a table of another dtype than the kernel's fp32.
  if (op.table.dtype != DType::kF32 ||
      (!op.position_table.empty() && op.position_table.dtype != DType::kF32)) {
    return run_on_host(op);
  }
  o.matrix(op.table, -1, -1, "table");
  const int64_t N = op.ids.numel(), C = op.table.shape[1];
  o.matrix(op.out, N, C, "out");
  const int32_t* positions = nullptr;
  const float* position_table = nullptr;
  if (!op.position_table.empty()) {
    o.matrix(op.position_table, -1, C, "position_table");
    o.numel(op.position_ids, N, "position_ids");
    positions = o.i32(op.position_ids, "position_ids");
    position_table = o.f32(op.position_table, "position_table");
  }
  void* out = o.act(op.out, "out");
  const int32_t* ids = o.i32(op.ids, "ids");
  const float* table = o.f32(op.table, "table");
  SWITCHYARD_WITH_ACT(encoder_forward<Act>(static_cast<Act*>(out), ids, table, positions,
                                           position_table, o.to_int(N, "ids"),
                                           o.to_int(C, "table"), stream_));
}

void CudaBackend::run(const ops::EmbeddingBackward& op) {
  const Operands o{"embedding_backward", activation_dtype()};
  o.matrix(op.dtable, -1, -1, "dtable");
  const int64_t N = op.ids.numel(), C = op.dtable.shape[1];
  o.matrix(op.dout, N, C, "dout");
  float* dposition_table = o.optional_f32(op.dposition_table, "dposition_table");
  const int32_t* positions = nullptr;
  int64_t P = 0;
  if (dposition_table) {
    o.matrix(op.dposition_table, -1, C, "dposition_table");
    o.numel(op.position_ids, N, "position_ids");
    positions = o.i32(op.position_ids, "position_ids");
    P = op.dposition_table.shape[0];
  }
  float* dtable = o.f32(op.dtable, "dtable");
  const void* dout = o.act(op.dout, "dout");
  const int32_t* ids = o.i32(op.ids, "ids");
  const int n = o.to_int(N, "ids"), V = o.to_int(op.dtable.shape[0], "dtable");
  const int p = o.to_int(P, "dposition_table");
  void* ws = workspace(encoder_backward_workspace_bytes(n, V, p));
  SWITCHYARD_WITH_ACT(encoder_backward<Act>(dtable, V, dposition_table, p,
                                            static_cast<const Act*>(dout), ids, positions, n,
                                            o.to_int(C, "dtable"), ws, stream_));
}

// ---- normalisation ----

void CudaBackend::run(const ops::LayerNorm& op) {
  const Operands o{"layernorm", activation_dtype()};
  o.matrix(op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cuda layernorm: rows must have channels, got {}", op.inp.describe());
  o.matrix(op.out, N, C, "out");
  o.numel(op.mean, N, "mean");
  o.numel(op.rstd, N, "rstd");
  o.numel(op.weight, C, "weight");
  o.numel(op.bias, C, "bias");
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  SWITCHYARD_WITH_ACT(layernorm_forward<Act>(
      static_cast<Act*>(out), o.f32(op.mean, "mean"), o.f32(op.rstd, "rstd"),
      static_cast<const Act*>(inp), o.f32(op.weight, "weight"), o.f32(op.bias, "bias"),
      o.to_int(N, "inp"), o.to_int(C, "inp"), op.epsilon, stream_));
}

void CudaBackend::run(const ops::LayerNormBackward& op) {
  const Operands o{"layernorm_backward", activation_dtype()};
  o.matrix(op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cuda layernorm_backward: rows must have channels, got {}", op.inp.describe());
  o.matrix(op.dinp, N, C, "dinp");
  o.matrix(op.dout, N, C, "dout");
  o.numel(op.mean, N, "mean");
  o.numel(op.rstd, N, "rstd");
  o.numel(op.weight, C, "weight");
  o.numel(op.dweight, C, "dweight");
  o.numel(op.dbias, C, "dbias");
  void* dinp = o.act(op.dinp, "dinp");
  const void* dout = o.act(op.dout, "dout");
  const void* inp = o.act(op.inp, "inp");
  const int n = o.to_int(N, "inp"), c = o.to_int(C, "inp");
  void* ws = workspace(layernorm_backward_workspace_bytes(n, c));
  SWITCHYARD_WITH_ACT(layernorm_backward<Act>(
      static_cast<Act*>(dinp), o.f32(op.dweight, "dweight"), o.f32(op.dbias, "dbias"),
      static_cast<const Act*>(dout), static_cast<const Act*>(inp), o.f32(op.weight, "weight"),
      o.f32(op.mean, "mean"), o.f32(op.rstd, "rstd"), n, c, ws, stream_));
}

void CudaBackend::run(const ops::AddLayerNorm& op) {
  const Operands o{"add_layernorm", activation_dtype()};
  o.matrix(op.a, -1, -1, "a");
  const int64_t N = op.a.shape[0], C = op.a.shape[1];
  require(C > 0, "cuda add_layernorm: rows must have channels, got {}", op.a.describe());
  o.matrix(op.b, N, C, "b");
  o.matrix(op.residual, N, C, "residual");
  o.matrix(op.out, N, C, "out");
  o.numel(op.mean, N, "mean");
  o.numel(op.rstd, N, "rstd");
  o.numel(op.weight, C, "weight");
  o.numel(op.bias, C, "bias");
  // The fused kernel lets the residual stream be updated in place (residual = a or b) but writes
  // out while a and b are still being read.
  if (overlaps(op.out, op.a) || overlaps(op.out, op.b) || overlaps(op.out, op.residual)) {
    return Backend::run(op);  // Add, then LayerNorm
  }
  void* residual = o.act(op.residual, "residual");
  void* out = o.act(op.out, "out");
  const void* a = o.act(op.a, "a");
  const void* b = o.act(op.b, "b");
  SWITCHYARD_WITH_ACT(residual_layernorm_forward<Act>(
      static_cast<Act*>(residual), static_cast<Act*>(out), o.f32(op.mean, "mean"),
      o.f32(op.rstd, "rstd"), static_cast<const Act*>(a), static_cast<const Act*>(b),
      o.f32(op.weight, "weight"), o.f32(op.bias, "bias"), o.to_int(N, "a"), o.to_int(C, "a"),
      op.epsilon, stream_));
}

// ---- linear layers ----

// Row-major out[N,OC] = inp[N,C] @ weight[OC,C]^T is, column-major, out^T[OC,N] = W^T' inp^T:
// A is the weight matrix read transposed (m = OC, k = C), B the inputs (n = N). The epilogue adds
// a bias of the output's dtype (cuBLASLt refuses an fp32 bias with bf16 outputs), so in bf16 mode
// the fp32 bias is first rounded to bf16 in scratch memory: one small kernel per product, and the
// numbers of the products before the op list, which read the bias from the bf16 weight copy.
bool CudaBackend::linear(void* out, const void* inp, const void* weight, const float* bias, int N,
                         int C, int OC, void* gelu_pre) {
  const MatrixType type = bf16_mode() ? MatrixType::kBF16 : MatrixType::kF32;
  GemmCall call{.trans_a = true, .m = OC, .n = N, .k = C,
                .a = weight, .lda = C, .a_type = type,
                .b = inp, .ldb = C, .b_type = type,
                .d = out, .ldd = OC, .d_type = type};
  if (gelu_pre) {
    // cuBLASLt's GELU is the tanh form; it is used where bf16 rounding dwarfs any difference from
    // the separate kernel, and only with a bias (its GELU epilogue includes one).
    if (!bf16_mode() || !bias || OC % 8 != 0) return false;
    call.epilogue = Epilogue::kGeluAuxBias;
    call.aux = gelu_pre;
    call.aux_ld = OC;
  } else if (bias) {
    call.epilogue = Epilogue::kBias;
  }
  if (!bias) return matmul_->run(call);  // a plain product: throws if cuBLASLt has none
  call.bias = bias;
  call.bias_type = type;
  if (bf16_mode()) {
    bf16* bias_copy = static_cast<bf16*>(workspace(static_cast<size_t>(OC) * sizeof(bf16)));
    convert_to_bf16(bias_copy, bias, static_cast<size_t>(OC), stream_);
    call.bias = bias_copy;
  }
  if (matmul_->run(call)) return true;
  require(gelu_pre != nullptr,
          "cuBLASLt has no algorithm for a {}x{}x{} product with a bias (transposes 1/0, leading "
          "dimensions {}/{}/{})",
          OC, N, C, C, C, OC);
  return false;
}

void CudaBackend::run(const ops::Linear& op) {
  const Operands o{"linear", activation_dtype()};
  o.act(op.out, "out");
  o.act(op.inp, "inp");
  // Weights of another dtype than the products read (fp32 masters in bf16 mode, say).
  if (op.weight.dtype != activation_dtype()) return run_on_host(op);
  o.matrix(op.weight, -1, -1, "weight");
  const int64_t OC = op.weight.shape[0], C = op.weight.shape[1];
  require(C > 0, "cuda linear: weight must have input channels, got {}", op.weight.describe());
  o.matrix(op.inp, -1, C, "inp");
  const int64_t N = op.inp.shape[0];
  o.matrix(op.out, N, OC, "out");
  if (!op.bias.empty()) o.numel(op.bias, OC, "bias");
  linear(o.act(op.out, "out"), o.act(op.inp, "inp"), o.act(op.weight, "weight"),
         o.optional_f32(op.bias, "bias"), o.to_int(N, "inp"), o.to_int(C, "weight"),
         o.to_int(OC, "weight"), nullptr);
}

void CudaBackend::run(const ops::LinearGelu& op) {
  const Operands o{"linear_gelu", activation_dtype()};
  o.act(op.pre, "pre");
  o.act(op.out, "out");
  o.act(op.inp, "inp");
  if (op.weight.dtype != activation_dtype()) return Backend::run(op);  // Linear on the host
  o.matrix(op.weight, -1, -1, "weight");
  const int64_t OC = op.weight.shape[0], C = op.weight.shape[1];
  require(C > 0, "cuda linear_gelu: weight must have input channels, got {}",
          op.weight.describe());
  o.matrix(op.inp, -1, C, "inp");
  const int64_t N = op.inp.shape[0];
  o.matrix(op.pre, N, OC, "pre");
  o.matrix(op.out, N, OC, "out");
  if (!op.bias.empty()) o.numel(op.bias, OC, "bias");
  void* pre = o.act(op.pre, "pre");
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  const void* weight = o.act(op.weight, "weight");
  const float* bias = o.optional_f32(op.bias, "bias");
  const int n = o.to_int(N, "inp"), c = o.to_int(C, "weight"), oc = o.to_int(OC, "weight");
  if (linear(out, inp, weight, bias, n, c, oc, pre)) return;
  linear(pre, inp, weight, bias, n, c, oc, nullptr);
  SWITCHYARD_WITH_ACT(gelu_forward<Act>(static_cast<Act*>(out), static_cast<const Act*>(pre),
                                        static_cast<size_t>(N * OC), stream_));
}

void CudaBackend::run(const ops::LinearBackward& op) {
  const Operands o{"linear_backward", activation_dtype()};
  if (!op.dinp.empty()) o.act(op.dinp, "dinp");
  o.act(op.dout, "dout");
  o.act(op.inp, "inp");
  if (op.weight.dtype != activation_dtype()) return run_on_host(op);
  o.matrix(op.weight, -1, -1, "weight");
  const int64_t OC = op.weight.shape[0], C = op.weight.shape[1];
  require(C > 0, "cuda linear_backward: weight must have input channels, got {}",
          op.weight.describe());
  o.matrix(op.inp, -1, C, "inp");
  const int64_t N = op.inp.shape[0];
  o.matrix(op.dout, N, OC, "dout");
  o.matrix(op.dweight, OC, C, "dweight");
  if (!op.dinp.empty()) o.matrix(op.dinp, N, C, "dinp");
  if (!op.dbias.empty()) o.numel(op.dbias, OC, "dbias");
  const MatrixType type = bf16_mode() ? MatrixType::kBF16 : MatrixType::kF32;
  const void* weight = o.act(op.weight, "weight");
  const void* dout = o.act(op.dout, "dout");
  const void* inp = o.act(op.inp, "inp");
  float* dweight = o.f32(op.dweight, "dweight");
  const int n = o.to_int(N, "inp"), c = o.to_int(C, "weight"), oc = o.to_int(OC, "weight");
  if (!op.dinp.empty()) {
    // dinp^T[C,N] += W^T[C,OC] dout^T[OC,N]: the row-major weight is W^T column-major.
    matmul_->run({.m = c, .n = n, .k = oc,
                  .a = weight, .lda = c, .a_type = type,
                  .b = dout, .ldb = oc, .b_type = type,
                  .d = o.act(op.dinp, "dinp"), .ldd = c, .d_type = type, .beta = 1});
  }
  // dW^T[C,OC] += inp^T[C,N] dout[N,OC]; dW stays fp32 (a parameter gradient) in both modes.
  matmul_->run({.trans_b = true, .m = c, .n = oc, .k = n,
                .a = inp, .lda = c, .a_type = type,
                .b = dout, .ldb = oc, .b_type = type,
                .d = dweight, .ldd = c, .d_type = MatrixType::kF32, .beta = 1});
  if (!op.dbias.empty()) {
    void* ws = workspace(bias_backward_workspace_bytes(n, oc));
    SWITCHYARD_WITH_ACT(bias_backward<Act>(o.f32(op.dbias, "dbias"),
                                           static_cast<const Act*>(dout), n, oc, ws, stream_));
  }
}

// ---- elementwise ----

void CudaBackend::run(const ops::Gelu& op) {
  const Operands o{"gelu", activation_dtype()};
  o.numel(op.out, op.inp.numel(), "out");
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  SWITCHYARD_WITH_ACT(gelu_forward<Act>(static_cast<Act*>(out), static_cast<const Act*>(inp),
                                        static_cast<size_t>(op.inp.numel()), stream_));
}

void CudaBackend::run(const ops::GeluBackward& op) {
  const Operands o{"gelu_backward", activation_dtype()};
  o.numel(op.dinp, op.inp.numel(), "dinp");
  o.numel(op.dout, op.inp.numel(), "dout");
  void* dinp = o.act(op.dinp, "dinp");
  const void* inp = o.act(op.inp, "inp");
  const void* dout = o.act(op.dout, "dout");
  SWITCHYARD_WITH_ACT(gelu_backward<Act>(static_cast<Act*>(dinp), static_cast<const Act*>(inp),
                                         static_cast<const Act*>(dout),
                                         static_cast<size_t>(op.inp.numel()), stream_));
}

void CudaBackend::run(const ops::Add& op) {
  const Operands o{"add", activation_dtype()};
  o.numel(op.b, op.a.numel(), "b");
  o.numel(op.out, op.a.numel(), "out");
  void* out = o.act(op.out, "out");
  const void* a = o.act(op.a, "a");
  const void* b = o.act(op.b, "b");
  SWITCHYARD_WITH_ACT(residual_forward<Act>(static_cast<Act*>(out), static_cast<const Act*>(a),
                                            static_cast<const Act*>(b),
                                            static_cast<size_t>(op.a.numel()), stream_));
}

void CudaBackend::run(const ops::Accumulate& op) {
  const Operands o{"accumulate", activation_dtype()};
  o.numel(op.dst, op.src.numel(), "dst");
  void* dst = o.act(op.dst, "dst");
  const void* src = o.act(op.src, "src");
  SWITCHYARD_WITH_ACT(accumulate<Act>(static_cast<Act*>(dst), static_cast<const Act*>(src),
                                      static_cast<size_t>(op.src.numel()), stream_));
}

void CudaBackend::run(const ops::Cast& op) {
  const Operands o{"cast", activation_dtype()};
  o.present(op.out, "out");
  o.present(op.inp, "inp");
  o.numel(op.out, op.inp.numel(), "out");
  auto float_type = [](DType d) { return d == DType::kF32 || d == DType::kBF16; };
  if (!float_type(op.out.dtype) || !float_type(op.inp.dtype) || !op.out.is_contiguous() ||
      !op.inp.is_contiguous() || (op.out.data != op.inp.data && overlaps(op.out, op.inp))) {
    return run_on_host(op);
  }
  const size_t n = static_cast<size_t>(op.inp.numel());
  if (n == 0) return;
  if (op.out.dtype == op.inp.dtype) {
    if (op.out.data == op.inp.data) return;
    check_cuda(cudaMemcpyAsync(op.out.data, op.inp.data, op.out.bytes(), cudaMemcpyDeviceToDevice,
                               stream_),
               "cast (copy)");
  } else if (op.out.dtype == DType::kBF16) {
    convert_to_bf16(static_cast<bf16*>(op.out.data), static_cast<const float*>(op.inp.data), n,
                    stream_);
  } else {
    convert_to_f32(static_cast<float*>(op.out.data), static_cast<const bf16*>(op.inp.data), n,
                   stream_);
  }
}

// ---- attention ----

void CudaBackend::run(const ops::Attention& op) {
  const Operands o{"attention", activation_dtype()};
  require_spec(op.spec, o.op);
  require(op.batch >= 0 && op.seq >= 0, "cuda attention: batch {} and seq {} must be >= 0",
          op.batch, op.seq);
  const int64_t N = static_cast<int64_t>(op.batch) * op.seq;
  const int H = op.spec.heads, hd = op.spec.head_dim;
  require_heads_view(o, op.q, N, H, hd, "q");
  require_heads_view(o, op.k, N, op.spec.kv_heads, hd, "k");
  require_heads_view(o, op.v, N, op.spec.kv_heads, hd, "v");
  o.act_view(op.out, "out");
  o.dtype(op.record, DType::kF32, "record");
  const size_t record = attention_record_floats(op.spec, op.batch, op.seq);
  require(op.record.numel() >= static_cast<int64_t>(record),
          "cuda attention: the record must hold {} fp32 values (attention_record_floats), got {}",
          record, op.record.describe());
  const void* qkv = flash_spec(op.spec) && op.sinks.empty() ? packed_qkv(op.q, op.k, op.v, N, op.spec)
                                                            : nullptr;
  if (!qkv || !dense_matrix(op.out, N, static_cast<int64_t>(H) * hd)) {
    // The host's reference keeps the full probabilities, which a record sized for the flash
    // kernels cannot hold.
    require(!flash_spec(op.spec) || op.seq <= 1,
            "cuda attention: q, k and v must be views of one packed [N, 3C] projection (and out "
            "a dense [N, C]) with this spec: its record holds row statistics for the GPU "
            "kernels, not the probabilities the host's reference keeps (q {}, k {}, v {}, out {}{})",
            op.q.describe(), op.k.describe(), op.v.describe(), op.out.describe(),
            op.sinks.empty() ? "" : ", with sinks");
    return run_on_host(op);
  }
  float* lse = o.f32(op.record, "record");
  SWITCHYARD_WITH_ACT(attention_forward<Act>(static_cast<Act*>(op.out.data), lse,
                                             static_cast<const Act*>(qkv), op.batch, op.seq,
                                             H * hd, H, stream_));
}

void CudaBackend::run(const ops::AttentionBackward& op) {
  const Operands o{"attention_backward", activation_dtype()};
  require_spec(op.spec, o.op);
  require(op.batch >= 0 && op.seq >= 0,
          "cuda attention_backward: batch {} and seq {} must be >= 0", op.batch, op.seq);
  const int64_t N = static_cast<int64_t>(op.batch) * op.seq;
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_heads_view(o, op.q, N, H, hd, "q");
  require_heads_view(o, op.k, N, KV, hd, "k");
  require_heads_view(o, op.v, N, KV, hd, "v");
  require_heads_view(o, op.dq, N, H, hd, "dq");
  require_heads_view(o, op.dk, N, KV, hd, "dk");
  require_heads_view(o, op.dv, N, KV, hd, "dv");
  o.act_view(op.out, "out");
  o.act_view(op.dout, "dout");
  o.dtype(op.record, DType::kF32, "record");
  o.dtype(op.scratch, DType::kF32, "scratch");
  const size_t record = attention_record_floats(op.spec, op.batch, op.seq);
  const size_t scratch = attention_scratch_floats(op.spec, op.batch, op.seq);
  require(op.record.numel() >= static_cast<int64_t>(record) &&
              op.scratch.numel() >= static_cast<int64_t>(scratch),
          "cuda attention_backward: record and scratch must hold {} and {} fp32 values "
          "(attention_record_floats, attention_scratch_floats), got {} and {}",
          record, scratch, op.record.describe(), op.scratch.describe());
  const bool flash = flash_spec(op.spec) && op.sinks.empty();
  const void* qkv = flash ? packed_qkv(op.q, op.k, op.v, N, op.spec) : nullptr;
  const void* dqkv = flash ? packed_qkv(op.dq, op.dk, op.dv, N, op.spec) : nullptr;
  const int64_t C = static_cast<int64_t>(H) * hd;
  if (!qkv || !dqkv || !dense_matrix(op.out, N, C) || !dense_matrix(op.dout, N, C)) {
    require(!flash_spec(op.spec) || op.seq <= 1,
            "cuda attention_backward: q, k, v and dq, dk, dv must be views of packed [N, 3C] "
            "projections (and out, dout dense [N, C]) with this spec: its record holds row "
            "statistics for the GPU kernels, not the probabilities the host's reference reads");
    return run_on_host(op);
  }
  float* lse = o.f32(op.record, "record");
  float* ws = o.f32(op.scratch, "scratch");
  SWITCHYARD_WITH_ACT(attention_backward<Act>(
      static_cast<Act*>(const_cast<void*>(dqkv)), ws, static_cast<const Act*>(op.dout.data),
      static_cast<const Act*>(op.out.data), static_cast<const Act*>(qkv), lse, op.batch, op.seq,
      static_cast<int>(C), H, stream_));
}

void CudaBackend::run(const ops::AttentionDecode& op) {
  const Operands o{"attention_decode", activation_dtype()};
  require_spec(op.spec, o.op);
  require(op.spec.heads == op.spec.kv_heads && op.spec.window == 0,
          "cuda attention_decode: the dense cache is for full multi-head attention");
  const int H = op.spec.heads, hd = op.spec.head_dim;
  o.act(op.k_cache, "k_cache");
  require(op.k_cache.rank == 4 && op.k_cache.shape[1] == H && op.k_cache.shape[3] == hd,
          "cuda attention_decode: k_cache must be [B, {}, max_seq, {}], got {}", H, hd,
          op.k_cache.describe());
  const int64_t B = op.k_cache.shape[0], max_T = op.k_cache.shape[2];
  require_heads_view(o, op.q, B, H, hd, "q");
  require_heads_view(o, op.k, B, H, hd, "k");
  require_heads_view(o, op.v, B, H, hd, "v");
  o.act(op.v_cache, "v_cache");
  o.numel(op.v_cache, op.k_cache.numel(), "v_cache");
  require(op.pos >= 0 && op.pos < max_T,
          "cuda attention_decode: position {} is outside the KV cache [0, {})", op.pos, max_T);
  o.act_view(op.out, "out");
  const int64_t C = static_cast<int64_t>(H) * hd;
  const void* qkv = flash_spec(op.spec) ? packed_qkv(op.q, op.k, op.v, B, op.spec) : nullptr;
  if (!qkv || !dense_matrix(op.out, B, C)) return run_on_host(op);
  SWITCHYARD_WITH_ACT(attention_decode<Act>(
      static_cast<Act*>(op.out.data), static_cast<const Act*>(qkv),
      static_cast<Act*>(op.k_cache.data), static_cast<Act*>(op.v_cache.data),
      o.to_int(B, "k_cache"), op.pos, o.to_int(max_T, "k_cache"), static_cast<int>(C), H,
      stream_));
}

void CudaBackend::run(const ops::KvCacheWrite& op) {
  const Operands o{"kv_cache_write", activation_dtype()};
  o.present(op.k_cache, "k_cache");
  require(op.k_cache.rank == 4, "cuda kv_cache_write: k_cache must be 4-D, got {}",
          op.k_cache.describe());
  const int KV = o.to_int(op.k_cache.shape[2], "k_cache");
  const int hd = o.to_int(op.k_cache.shape[3], "k_cache");
  require_cache(o, op.k_cache, KV, hd, "k_cache");
  require_cache(o, op.v_cache, KV, hd, "v_cache");
  require(op.v_cache.shape[0] == op.k_cache.shape[0] && op.v_cache.shape[1] == op.k_cache.shape[1],
          "cuda kv_cache_write: k_cache {} and v_cache {} differ", op.k_cache.describe(),
          op.v_cache.describe());
  const int64_t N = op.slots.numel();
  require_heads_view(o, op.k, N, KV, hd, "k");
  require_heads_view(o, op.v, N, KV, hd, "v");
  const int32_t* slots = o.i32(op.slots, "slots");
  SWITCHYARD_WITH_ACT(kv_cache_write<Act>(
      static_cast<Act*>(op.k_cache.data), static_cast<Act*>(op.v_cache.data),
      static_cast<const Act*>(op.k.data), op.k.strides[0], static_cast<const Act*>(op.v.data),
      op.v.strides[0], slots, o.to_int(N, "slots"), op.k_cache.shape[0] * op.k_cache.shape[1],
      KV, hd, stream_));
}

void CudaBackend::run(const ops::PagedAttention& op) {
  const Operands o{"paged_attention", activation_dtype()};
  require_spec(op.spec, o.op);
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_cache(o, op.k_cache, KV, hd, "k_cache");
  require_cache(o, op.v_cache, KV, hd, "v_cache");
  require(op.v_cache.shape[0] == op.k_cache.shape[0] && op.v_cache.shape[1] == op.k_cache.shape[1],
          "cuda paged_attention: k_cache {} and v_cache {} differ", op.k_cache.describe(),
          op.v_cache.describe());
  const int64_t N = op.q.rank > 0 ? op.q.shape[0] : 0;
  require_heads_view(o, op.q, N, H, hd, "q");
  o.act_view(op.out, "out");
  require(op.out.rank == 2 && op.out.shape[0] == N && op.out.shape[1] == int64_t{H} * hd &&
              op.out.strides[1] == 1,
          "cuda paged_attention: out must be [{}, {}] with dense rows, got {}", N, H * hd,
          op.out.describe());
  require(op.block_tables.rank == 2,
          "cuda paged_attention: block_tables must be [sequences, blocks], got {}",
          op.block_tables.describe());
  const int S = o.to_int(op.block_tables.shape[0], "block_tables");
  o.numel(op.query_start, S + 1, "query_start");
  o.numel(op.context_len, S, "context_len");
  require(S > 0 || N == 0, "cuda paged_attention: {} query rows but no sequences", N);
  const float* sinks = o.optional_f32(op.sinks, "sinks");
  if (sinks) o.numel(op.sinks, H, "sinks");
  if (hd > kPagedMaxHeadSize) return run_on_host(op);
  PagedAttentionShape shape;
  shape.rows = o.to_int(N, "q");
  shape.heads = H;
  shape.kv_heads = KV;
  shape.head_dim = hd;
  shape.window = op.spec.window;
  shape.block_size = o.to_int(op.k_cache.shape[1], "k_cache");
  shape.blocks = op.k_cache.shape[0];
  shape.sequences = S;
  shape.max_blocks = o.to_int(op.block_tables.shape[1], "block_tables");
  shape.ldq = op.q.strides[0];
  shape.ldo = op.out.strides[0];
  shape.scale = op.spec.effective_scale();
  SWITCHYARD_WITH_ACT(paged_attention<Act>(
      static_cast<Act*>(op.out.data), static_cast<const Act*>(op.q.data),
      static_cast<const Act*>(op.k_cache.data), static_cast<const Act*>(op.v_cache.data),
      o.i32(op.block_tables, "block_tables"), o.i32(op.query_start, "query_start"),
      o.i32(op.context_len, "context_len"), sinks, shape, stream_));
}

// ---- loss ----

// Targets are device memory here; the model range-checks them on the host before copying.
void CudaBackend::run(const ops::CrossEntropy& op) {
  const Operands o{"cross_entropy", activation_dtype()};
  o.matrix(op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], V = op.logits.shape[1];
  require(V > 0, "cuda cross_entropy: logits must have a vocabulary, got {}",
          op.logits.describe());
  o.numel(op.losses, N, "losses");
  o.numel(op.targets, N, "targets");
  float* losses = o.f32(op.losses, "losses");
  const void* logits = o.act(op.logits, "logits");
  const int32_t* targets = o.i32(op.targets, "targets");
  SWITCHYARD_WITH_ACT(cross_entropy_forward<Act>(losses, static_cast<const Act*>(logits), targets,
                                                 o.to_int(N, "logits"), o.to_int(V, "logits"),
                                                 stream_));
}

void CudaBackend::run(const ops::CrossEntropyBackward& op) {
  const Operands o{"cross_entropy_backward", activation_dtype()};
  o.matrix(op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], V = op.logits.shape[1];
  require(V > 0, "cuda cross_entropy_backward: logits must have a vocabulary, got {}",
          op.logits.describe());
  o.matrix(op.dlogits, N, V, "dlogits");
  o.numel(op.targets, N, "targets");
  void* dlogits = o.act(op.dlogits, "dlogits");
  const void* logits = o.act(op.logits, "logits");
  const int32_t* targets = o.i32(op.targets, "targets");
  SWITCHYARD_WITH_ACT(cross_entropy_backward<Act>(
      static_cast<Act*>(dlogits), static_cast<const Act*>(logits), targets, op.dloss,
      o.to_int(N, "logits"), o.to_int(V, "logits"), stream_));
}

// ---- optimizer and step statistics ----

void CudaBackend::run(const ops::SumOfSquares& op) {
  const Operands o{"sum_of_squares", activation_dtype()};
  o.numel(op.total, 1, "total");
  double* total = o.f64(op.total, "total");
  const float* x = o.f32(op.x, "x");
  const size_t n = static_cast<size_t>(op.x.numel());
  cuda::sum_of_squares(total, x, n, workspace(sum_workspace_bytes(n)), stream_);
}

void CudaBackend::run(const ops::AccumulateSum& op) {
  const Operands o{"accumulate_sum", activation_dtype()};
  o.numel(op.total, 1, "total");
  double* total = o.f64(op.total, "total");
  const float* x = o.f32(op.x, "x");
  const size_t n = static_cast<size_t>(op.x.numel());
  cuda::accumulate_sum(total, x, n, op.scale, workspace(sum_workspace_bytes(n)), stream_);
}

void CudaBackend::run(const ops::AdamW& op) {
  const ops::AdamWStep& step = op.step;
  require(step.step >= 1, "cuda adamw: step must be >= 1 (1-based), got {}", step.step);
  require(step.beta1 >= 0 && step.beta1 < 1 && step.beta2 >= 0 && step.beta2 < 1,
          "cuda adamw: betas must be in [0, 1), got {} and {}", step.beta1, step.beta2);
  // The kernel writes a bf16 copy; a copy of another dtype runs on the host.
  if (!op.params_copy.empty() &&
      (op.params_copy.dtype != DType::kBF16 || !op.params_copy.is_contiguous())) {
    return run_on_host(op);
  }
  const Operands o{"adamw", activation_dtype()};
  o.present(op.params, "params");
  const int64_t N = op.params.numel();
  o.numel(op.grads, N, "grads");
  o.numel(op.m, N, "m");
  o.numel(op.v, N, "v");
  float* params = o.f32(op.params, "params");
  const float* grads = o.f32(op.grads, "grads");
  float* m = o.f32(op.m, "m");
  float* v = o.f32(op.v, "v");
  const double* grad_sum_of_squares = nullptr;
  if (!op.grad_sum_of_squares.empty()) {
    o.numel(op.grad_sum_of_squares, 1, "grad_sum_of_squares");
    grad_sum_of_squares = o.f64(op.grad_sum_of_squares, "grad_sum_of_squares");
  }
  bf16* copy = nullptr;
  if (!op.params_copy.empty()) {
    o.numel(op.params_copy, N, "params_copy");
    copy = static_cast<bf16*>(op.params_copy.data);
  }
  adamw_update(params, grads, m, v, copy, static_cast<size_t>(N), step.learning_rate, step.beta1,
               step.beta2, step.epsilon, step.weight_decay, step.step, step.grad_scale,
               grad_sum_of_squares, op.clip, stream_);
}

#undef SWITCHYARD_WITH_ACT

}  // namespace switchyard::backend::cuda
