// CudaBackend's ops other than attention, RMSNorm, RoPE and the mixture of experts (which have
// files of their own), and supports() for all of them: check the operands as cpu_ops.cc does,
// then queue the kernels, or run the CPU reference on the host for forms the kernels do not
// handle.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>

#include "backend/cuda/cross_entropy_kernels.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_operands.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/encoder_kernels.h"
#include "backend/cuda/layernorm_kernels.h"
#include "backend/cuda/optimizer_kernels.h"
#include "backend/host_fallback.h"
#include "core/error.h"

namespace switchyard::backend::cuda {

// ---- what runs natively ----

bool CudaBackend::supports(OpKind kind, std::span<const DType> dtypes) const {
  // One letter per operand in for_each_tensor order: A activation (and matmul weights), F fp32,
  // I int32, D fp64, B bf16, T fp32 or bf16 (tables, trainable expert weights), X fp32 or the
  // activation dtype (a table's gradient), W fp32, bf16 or mxfp4 (expert weights), N nothing (an
  // operand this backend does not take: fp32 halves' low halves); lower case marks an optional
  // operand, which may also be absent (an empty Tensor reads as fp32).
  const char* pattern = nullptr;
  switch (kind) {
    case OpKind::kEmbedding: pattern = "AITifnn"; break;
    case OpKind::kEmbeddingBackward: pattern = "XfAIi"; break;
    case OpKind::kLayerNorm: pattern = "AFFAFF"; break;
    case OpKind::kLayerNormBackward: pattern = "AFFAAFFF"; break;
    case OpKind::kAddLayerNorm: pattern = "AAFFAAFF"; break;
    case OpKind::kRmsNorm: pattern = "AFAF"; break;
    case OpKind::kRmsNormBackward: pattern = "AFAAFF"; break;
    case OpKind::kLinear: pattern = "AATf"; break;
    case OpKind::kLinearBackward: pattern = "aFfAAA"; break;
    case OpKind::kLinearGelu: pattern = "AAAAf"; break;
    case OpKind::kGelu: pattern = "AA"; break;
    case OpKind::kGeluBackward: pattern = "AAA"; break;
    case OpKind::kAdd: pattern = "AAA"; break;
    case OpKind::kAccumulate: pattern = "AA"; break;
    case OpKind::kRope: pattern = "AFFI"; break;
    case OpKind::kTopKRouting: pattern = "IFA"; break;
    case OpKind::kTopKRoutingBackward: pattern = "AFFI"; break;
    case OpKind::kGroupByExpert: pattern = "IIIII"; break;
    case OpKind::kExpertLinear: pattern = "AAWfI"; break;
    case OpKind::kExpertLinearBackward: pattern = "aFfAATI"; break;
    case OpKind::kClampedSwiglu: pattern = "AA"; break;
    case OpKind::kClampedSwigluBackward: pattern = "AAA"; break;
    case OpKind::kExpertCombine: pattern = "AAFI"; break;
    case OpKind::kExpertCombineBackward: pattern = "AFAAFI"; break;
    case OpKind::kRouterLoadStats: pattern = "DAI"; break;
    case OpKind::kRouterLoadBackward: pattern = "AAD"; break;
    case OpKind::kAttention: pattern = "AFAAAf"; break;
    case OpKind::kAttentionBackward: pattern = "AAAfFAAFAAAf"; break;
    case OpKind::kKvCacheWrite: pattern = "AAAAI"; break;
    case OpKind::kPagedAttention: pattern = "AAAAIIIf"; break;
    case OpKind::kAttentionDecode: pattern = "AAAAAA"; break;
    case OpKind::kCrossEntropy: pattern = "FAI"; break;
    case OpKind::kCrossEntropyBackward: pattern = "AAIf"; break;
    case OpKind::kSumOfSquares: pattern = "DF"; break;
    case OpKind::kAccumulateSum: pattern = "DF"; break;
    case OpKind::kAdamW: pattern = "FFFFdbn"; break;
    case OpKind::kCast: {
      auto float_type = [](DType d) { return d == DType::kF32 || d == DType::kBF16; };
      return dtypes.size() == 2 && float_type(dtypes[0]) && float_type(dtypes[1]);
    }
  }
  if (pattern == nullptr || std::strlen(pattern) != dtypes.size()) return false;
  const DType act = activation_dtype();
  auto matches = [act](char letter, DType d) {
    switch (letter) {
      case 'A': return d == act;
      case 'F': return d == DType::kF32;
      case 'I': return d == DType::kI32;
      case 'D': return d == DType::kF64;
      case 'B': return d == DType::kBF16;
      case 'T': return d == DType::kF32 || d == DType::kBF16;
      case 'X': return d == DType::kF32 || d == act;
      case 'W': return d == DType::kF32 || d == DType::kBF16 || d == DType::kMXFP4;
      case 'N': return false;
    }
    return false;
  };
  for (size_t i = 0; i < dtypes.size(); ++i) {
    const char letter = pattern[i];
    const bool optional = std::islower(static_cast<unsigned char>(letter)) != 0;
    const char upper = static_cast<char>(std::toupper(static_cast<unsigned char>(letter)));
    if (!matches(upper, dtypes[i]) && !(optional && dtypes[i] == DType::kF32)) return false;
  }
  return true;
}

// ---- embeddings ----

// A table of fp32 parameters, or of bf16 (a frozen checkpoint's, or activations when the op
// gathers rows); position tables are fp32 parameters.
void CudaBackend::run(const ops::Embedding& op) {
  const Operands o{"embedding", activation_dtype()};
  o.act(op.out, "out");
  if ((op.table.dtype != DType::kF32 && op.table.dtype != DType::kBF16) ||
      (!op.position_table.empty() && op.position_table.dtype != DType::kF32)) {
    return run_on_host(op);
  }
  o.matrix(op.table, -1, -1, "table");
  o.dense(op.table, "table");
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
  const int n = o.to_int(N, "ids"), c = o.to_int(C, "table");
  if (op.table.dtype == DType::kBF16) {
    const bf16* table = static_cast<const bf16*>(op.table.data);
    SWITCHYARD_WITH_ACT(encoder_forward<Act>(static_cast<Act*>(out), ids, table, positions,
                                             position_table, n, c, stream_));
  } else {
    const float* table = static_cast<const float*>(op.table.data);
    SWITCHYARD_WITH_ACT(encoder_forward<Act>(static_cast<Act*>(out), ids, table, positions,
                                             position_table, n, c, stream_));
  }
}

// The table's gradient is fp32 (parameters), or of the activation dtype when the forward pass
// gathered rows of activations (a scatter-add onto their gradient).
void CudaBackend::run(const ops::EmbeddingBackward& op) {
  const Operands o{"embedding_backward", activation_dtype()};
  o.matrix(op.dtable, -1, -1, "dtable");
  const bool activation_rows = op.dtable.dtype == activation_dtype() && bf16_mode();
  if (!activation_rows) o.dtype(op.dtable, DType::kF32, "dtable");
  o.dense(op.dtable, "dtable");
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
  const void* dout = o.act(op.dout, "dout");
  const int32_t* ids = o.i32(op.ids, "ids");
  const int n = o.to_int(N, "ids"), V = o.to_int(op.dtable.shape[0], "dtable");
  const int p = o.to_int(P, "dposition_table"), c = o.to_int(C, "dtable");
  void* ws = workspace(encoder_backward_workspace_bytes(n, V, p));
  if (activation_rows) {
    encoder_backward<bf16>(static_cast<bf16*>(op.dtable.data), V, dposition_table, p,
                           static_cast<const bf16*>(dout), ids, positions, n, c, ws, stream_);
    return;
  }
  float* dtable = static_cast<float*>(op.dtable.data);
  SWITCHYARD_WITH_ACT(encoder_backward<Act>(dtable, V, dposition_table, p,
                                            static_cast<const Act*>(dout), ids, positions, n, c,
                                            ws, stream_));
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
  // Block formats (MXFP4) have no product here: the CPU reference decodes them.
  if (op.weight.dtype != DType::kF32 && op.weight.dtype != DType::kBF16) return run_on_host(op);
  o.matrix(op.weight, -1, -1, "weight");
  o.dense(op.weight, "weight");
  const int64_t OC = op.weight.shape[0], C = op.weight.shape[1];
  require(C > 0, "cuda linear: weight must have input channels, got {}", op.weight.describe());
  o.matrix(op.inp, -1, C, "inp");
  const int64_t N = op.inp.shape[0];
  o.matrix(op.out, N, OC, "out");
  if (!op.bias.empty()) o.numel(op.bias, OC, "bias");
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  const float* bias = o.optional_f32(op.bias, "bias");
  const int n = o.to_int(N, "inp"), c = o.to_int(C, "weight"), oc = o.to_int(OC, "weight");
  if (op.weight.dtype != activation_dtype()) {
    linear_converting_weights(out, inp, op.weight, bias, n, c, oc);
    return;
  }
  linear(out, inp, op.weight.data, bias, n, c, oc, nullptr);
}

// Weights stored in the other float dtype than the products read: a frozen checkpoint's bf16 in
// fp32 mode, or fp32 in bf16 mode. Slices of the weight's rows are converted into scratch memory
// (widened exactly, or rounded to nearest even as the bf16 copies of trainable weights are) and
// multiplied into the matching columns of out, so the scratch stays small whatever the layer.
void CudaBackend::linear_converting_weights(void* out, const void* inp, const Tensor& weight,
                                            const float* bias, int N, int C, int OC) {
  constexpr int64_t kSliceElements = int64_t{1} << 22;
  // Rows per slice, a multiple of 8 so that every slice's columns of out start 16-byte aligned.
  const int rows = static_cast<int>(
      std::min<int64_t>(OC, std::max<int64_t>(8, kSliceElements / C / 8 * 8)));
  const MatrixType type = bf16_mode() ? MatrixType::kBF16 : MatrixType::kF32;
  const size_t element = bf16_mode() ? sizeof(bf16) : sizeof(float);
  const size_t slice_bytes = (static_cast<size_t>(rows) * C * element + 255) / 256 * 256;
  const size_t bias_bytes = bias && bf16_mode() ? static_cast<size_t>(OC) * sizeof(bf16) : 0;
  char* scratch = static_cast<char*>(workspace(slice_bytes + bias_bytes));
  void* slice = scratch;
  const void* device_bias = bias;
  if (bias_bytes > 0) {  // cuBLASLt's epilogue takes a bias of the output's dtype
    convert_to_bf16(reinterpret_cast<bf16*>(scratch + slice_bytes), bias,
                    static_cast<size_t>(OC), stream_);
    device_bias = scratch + slice_bytes;
  }
  for (int o0 = 0; o0 < OC; o0 += rows) {
    const int m = std::min(rows, OC - o0);
    const size_t count = static_cast<size_t>(m) * C, first = static_cast<size_t>(o0) * C;
    if (bf16_mode()) {
      convert_to_bf16(static_cast<bf16*>(slice), static_cast<const float*>(weight.data) + first,
                      count, stream_);
    } else {
      convert_to_f32(static_cast<float*>(slice), static_cast<const bf16*>(weight.data) + first,
                     count, stream_);
    }
    GemmCall call{.trans_a = true, .m = m, .n = N, .k = C,
                  .a = slice, .lda = C, .a_type = type,
                  .b = inp, .ldb = C, .b_type = type,
                  .d = static_cast<char*>(out) + static_cast<size_t>(o0) * element, .ldd = OC,
                  .d_type = type};
    if (device_bias) {
      call.epilogue = Epilogue::kBias;
      call.bias = static_cast<const char*>(device_bias) + static_cast<size_t>(o0) * element;
      call.bias_type = type;
      require(matmul_->run(call),
              "cuBLASLt has no algorithm for a {}x{}x{} product with a bias (converted weights)", m,
              N, C);
    } else {
      matmul_->run(call);  // a plain product: throws if cuBLASLt has none
    }
  }
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
  zero_overwritten(op);  // a memset at the GPU's bandwidth; the products below add
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

}  // namespace switchyard::backend::cuda
