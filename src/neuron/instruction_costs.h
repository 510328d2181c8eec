// What each instruction costs on its engine, from the published cost model (cost_model.h) and the
// core's clocks (CoreConfig): engine cycles for compute instructions, queue efficiency for DMA.
// Pure functions of the operands' shapes, dtypes and memories, never of their values.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "neuron/config.h"
#include "neuron/isa.h"
#include "neuron/view.h"

namespace switchyard::neuron::cost {

double engine_ghz(const CoreConfig& config, Engine engine);

// An elementwise instruction on `engine` over n elements per partition reading `inputs` tensors:
// ScalarE max(64, N); GpSimd 150 + N x inputs; VectorE max(64, N x inputs), divided in trn2's
// fast mode (when `fast_mode_eligible`, contiguous and in SBUF). An innermost stride over 16
// bytes in any of `operands` doubles the N term.
double elementwise_cycles(const CoreConfig& config, Engine engine, int64_t n, int inputs,
                          std::initializer_list<const View*> operands, bool fast_mode_eligible);
double tensor_tensor_cycles(const CoreConfig& config, const View& out, const View& a, AluOp alu,
                            const View& b, Engine engine);
double tensor_scalar_cycles(const CoreConfig& config, const View& out, const View& in,
                            Engine engine);
double tensor_reduce_cycles(const CoreConfig& config, AluOp alu, const View& in, Engine engine);
double tensor_copy_cycles(const CoreConfig& config, const View& out, const View& in,
                          Engine engine);
double reciprocal_cycles(const CoreConfig& config, const View& out, const View& in,
                         Engine engine);
double memset_cycles(const CoreConfig& config, const View& out, Engine engine);
double select_cycles(const CoreConfig& config, const View& out, const View& predicate,
                     const View& on_true, const View& on_false, Engine engine);
// iota and affine_select.
double gpsimd_affine_cycles(const View& out);
double activation_cycles(const CoreConfig& config, const View& out, const View& in,
                         bool reduces);
// mxfp4_decode on VectorE or GpSimd: kMxfp4DecodePasses elementwise passes over out's elements.
double mxfp4_decode_cycles(const CoreConfig& config, const View& out, const View& codes,
                           const View& scales, Engine engine);
// Cycles after an engine instruction ends until its result is visible to others.
double engine_latency_cycles(Engine engine);

// TensorE: a MultiplyMoving of n moving columns (inputs of `dtype`; both fp8 for `both_fp8`).
double multiply_cycles(const CoreConfig& config, int64_t n, DType dtype, bool both_fp8);
// Nanoseconds of the LoadStationary and of the MultiplyMoving of a matmul.
struct TensorCost {
  double load_ns = 0;
  double multiply_ns = 0;
};
TensorCost matmul_cost(const CoreConfig& config, const View& stationary, const View& moving);
// A transpose is a matmul with `in` as stationary and an identity as moving.
TensorCost transpose_cost(const CoreConfig& config, const View& in);

// Fraction of a queue's bandwidth a copy from `src` reaches (a DMA transpose: lower).
double dma_copy_efficiency(const View& src);

}  // namespace switchyard::neuron::cost
