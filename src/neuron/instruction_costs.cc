#include "neuron/instruction_costs.h"

#include <algorithm>

#include "core/error.h"
#include "neuron/cost_model.h"

namespace switchyard::neuron::cost {

double engine_ghz(const CoreConfig& config, Engine engine) {
  switch (engine) {
    case Engine::kTensor:
      return config.tensor_ghz;
    case Engine::kVector:
      return config.vector_ghz;
    case Engine::kScalar:
      return config.scalar_ghz;
    case Engine::kGpSimd:
      return config.gpsimd_ghz;
  }
  return 1.0;
}

double elementwise_cycles(const CoreConfig& config, Engine engine, int64_t n, int inputs,
                          std::initializer_list<const View*> operands, bool fast_mode_eligible) {
  // An innermost stride over 16 bytes halves SBUF/PSUM bandwidth (perf guide).
  int64_t stride_factor = 1;
  bool contiguous = true;
  bool all_sbuf = true;
  bool all_16bit = true;
  for (const View* v : operands) {
    int64_t inner = v->free_dims() ? v->free_dim(v->free_dims() - 1).stride : 1;
    if (v->free_dims() && v->free_dim(v->free_dims() - 1).size > 1 &&
        inner * dtype_bytes(v->dtype()) > kWideStrideBytes)
      stride_factor = kWideStrideFactor;
    if (inner != 1) contiguous = false;
    if (v->memory() != Memory::kSbuf) all_sbuf = false;
    if (v->dtype() != DType::kBF16 && v->dtype() != DType::kF16) all_16bit = false;
  }
  switch (engine) {
    case Engine::kScalar:
      return static_cast<double>(std::max(kScalarMinCycles, n * stride_factor));
    case Engine::kGpSimd:
      return static_cast<double>(kGpSimdFixedCycles + n * inputs * stride_factor);
    case Engine::kVector: {
      double cycles = static_cast<double>(n * inputs * stride_factor);
      if (config.vector_fast_mode && fast_mode_eligible && contiguous && all_sbuf) {
        cycles /= all_16bit ? kVectorFastModeDivisor16 : kVectorFastModeDivisorOther;
      }
      return std::max(static_cast<double>(kVectorMinIssueCycles), cycles);
    }
    case Engine::kTensor:
      break;
  }
  fail("TensorE does not run elementwise instructions");  // the rules reject this first
}

double tensor_tensor_cycles(const CoreConfig& config, const View& out, const View& a, AluOp alu,
                            const View& b, Engine engine) {
  // Exception (perf guide): bf16 SBUF tensor_tensor add/subtract/multiply streams at N, not 2N.
  bool bf16_sbuf = true;
  for (const View* v : {&out, &a, &b})
    bf16_sbuf = bf16_sbuf && v->dtype() == DType::kBF16 && v->memory() == Memory::kSbuf;
  const bool one_pass = engine == Engine::kVector && bf16_sbuf &&
                        (alu == AluOp::kAdd || alu == AluOp::kSubtract || alu == AluOp::kMultiply);
  return elementwise_cycles(config, engine, out.free_size(), one_pass ? 1 : 2, {&out, &a, &b},
                            false);
}

double tensor_scalar_cycles(const CoreConfig& config, const View& out, const View& in,
                            Engine engine) {
  return elementwise_cycles(config, engine, out.free_size(), 1, {&out, &in}, true);
}

double tensor_reduce_cycles(const CoreConfig& config, AluOp alu, const View& in, Engine engine) {
  double cycles = elementwise_cycles(config, engine, in.free_size(), 1, {&in}, false);
  // Exception (perf guide): bf16 tensor_reduce add/max at N/2.
  if (engine == Engine::kVector && in.dtype() == DType::kBF16 &&
      (alu == AluOp::kAdd || alu == AluOp::kMax)) {
    cycles = std::max(static_cast<double>(kVectorMinIssueCycles),
                      cycles / kVectorBf16ReduceDivisor);
  }
  return cycles;
}

double tensor_copy_cycles(const CoreConfig& config, const View& out, const View& in,
                          Engine engine) {
  return elementwise_cycles(config, engine, out.free_size(), 1, {&out, &in}, true);
}

double reciprocal_cycles(const CoreConfig& config, const View& out, const View& in,
                         Engine engine) {
  double cycles = elementwise_cycles(config, engine, out.free_size(), 1, {&out, &in}, false);
  if (engine == Engine::kVector) cycles *= kVectorReciprocalFactor;  // perf guide: 8N
  return cycles;
}

double memset_cycles(const CoreConfig& config, const View& out, Engine engine) {
  return elementwise_cycles(config, engine, out.free_size(), 1, {&out}, false);
}

double select_cycles(const CoreConfig& config, const View& out, const View& predicate,
                     const View& on_true, const View& on_false, Engine engine) {
  return elementwise_cycles(config, engine, out.free_size(), 3,
                            {&out, &predicate, &on_true, &on_false}, false);
}

double gpsimd_affine_cycles(const View& out) {
  return static_cast<double>(kGpSimdFixedCycles + out.free_size());
}

double activation_cycles(const CoreConfig& config, const View& out, const View& in,
                         bool reduces) {
  double cycles = elementwise_cycles(config, Engine::kScalar, out.free_size(), 1, {&out, &in},
                                     false);
  if (reduces) cycles += kScalarReduceCycles;
  return cycles;
}

double mxfp4_decode_cycles(const CoreConfig& config, const View& out, const View& codes,
                           const View& scales, Engine engine) {
  return elementwise_cycles(config, engine, kMxfp4DecodePasses * out.free_size(), 1,
                            {&out, &codes, &scales}, false);
}

double engine_latency_cycles(Engine engine) {
  return engine == Engine::kVector   ? kVectorFixedLatencyCycles
         : engine == Engine::kScalar ? kScalarFixedLatencyCycles
                                     : 0;  // GpSimd's fixed part is in its cycles
}

double multiply_cycles(const CoreConfig& config, int64_t n, DType dtype, bool both_fp8) {
  double cycles = static_cast<double>(std::max(n, kMatmulMinCycles));
  if (dtype == DType::kF32) cycles *= kMatmulFp32Factor;
  if (both_fp8 && config.fp8_double_rate) cycles /= kMatmulFp8V3Divisor;
  return cycles;
}

TensorCost matmul_cost(const CoreConfig& config, const View& stationary, const View& moving) {
  // MultiplyMoving max(N, 64) cycles (4x for fp32, half for fp8 on v3); LoadStationary a quarter
  // of a multiply of the stationary's size.
  const DType dtype = moving.dtype();
  const bool both_fp8 = is_fp8(stationary.dtype()) && is_fp8(moving.dtype());
  const double ghz = config.tensor_ghz;
  TensorCost c;
  c.load_ns =
      multiply_cycles(config, stationary.free_size(), dtype, both_fp8) / kLoadStationarySpeedup /
      ghz;
  c.multiply_ns = multiply_cycles(config, moving.free_size(), dtype, both_fp8) / ghz;
  return c;
}

TensorCost transpose_cost(const CoreConfig& config, const View& in) {
  const int64_t P = in.partitions();
  const int64_t F = in.free_size();
  double cycles = static_cast<double>(std::max(P, kMatmulMinCycles));
  if (in.dtype() == DType::kF32) cycles *= kMatmulFp32Factor;
  double load_cycles = static_cast<double>(std::max(F, kMatmulMinCycles)) *
                       (in.dtype() == DType::kF32 ? kMatmulFp32Factor : 1) /
                       kLoadStationarySpeedup;
  const double ghz = config.tensor_ghz;
  return TensorCost{load_cycles / ghz, cycles / ghz};
}

double dma_copy_efficiency(const View& src) {
  // A source whose innermost contiguous run is a single element (while a partition holds
  // several) is read element by element: a DMA transpose.
  if (src.free_size() <= 1) return 1.0;
  const int last = src.free_dims() - 1;
  const bool element_granular = !(src.free_dim(last).size > 1 && src.free_dim(last).stride == 1);
  if (!element_granular) return 1.0;
  return src.memory() == Memory::kHbm ? kDmaTransposeEfficiencyFromHbm
                                      : kDmaTransposeEfficiencyFromSbuf;
}

}  // namespace switchyard::neuron::cost
