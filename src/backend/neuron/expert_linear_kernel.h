// Every expert's linear layer over its own rows (the ExpertLinear and ExpertLinearBackward ops of
// ops.h) as tile programs.
//
// Rows come in grouped order: expert e owns rows [offsets[e], offsets[e + 1]) of inp, out, dout and
// dinp, and its weight is rows [e * OC, (e + 1) * OC) of the [E * OC, C] weight matrix. The host
// reads the offsets when it launches (device memory is host memory), so an expert without rows
// issues nothing and costs nothing, and each expert's weights stream from HBM once per call.
//
// fp32 and bf16 weights: each expert's product is the core's GEMM tile program (through
// linear_kernel.h), as a Linear over the expert's rows.
//
// MXFP4 weights (inference only: they are frozen, so there is no backward pass): NeuronCore-v2/v3
// have no FP4 matmul, so the codes are decoded to the compute dtype on the chip (mxfp4_decode on
// VectorE and GpSimd) and multiplied in it. (Trainium3's TensorE multiplies MXFP4 itself, with the
// scales applied inside the matmul, and would skip the decode.) The program gives each partition
// (a lane of the contraction) a run of one block's values, so that the block's scale belongs to
// that partition: the whole 32-value block, or a half or a quarter of it (its scale byte loaded
// once per run) when that fills the 128 partitions better (gpt-oss's C = 2880 is 90 blocks: 360
// quarter runs fill three tiles of 128 lanes to 94%, where 90 whole blocks would fill one to 70%);
//   - a weight tile is [lanes (up to 128 partitions), up to 128 output features, run]: per lane
//     and feature, the run's code bytes as they lie in HBM, and its block's scale byte;
//     mxfp4_decode turns it into the values in one instruction;
//   - the matmul for value position q of the runs multiplies that tile's [lanes, 128] slice at q
//     (stationary) by the rows' inputs at the same positions (moving, up to 512 rows), accumulating
//     in PSUM over q and over tiles of lanes: out^T [features, rows], drained by ScalarE (adding
//     the bias as a per-partition column) and stored through a transposing DMA.
// Weights stay stationary because decoding few rows is the common case: a matmul of n moving
// columns costs max(n, 64) cycles, so few rows cost 64 cycles per 128 x 128 block of weights where
// weights as the moving operand would cost 512 per 128 x 512.
// The decode is what bounds the program (three element passes per weight, kMxfp4DecodePasses): it
// is spread over VectorE and GpSimd, each tile to the engine that finishes it first; the next
// tiles' codes stream in over most DMA queues meanwhile, and TensorE multiplies each decoded
// tile while the engines decode the next ones.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// The weights of E experts of OC outputs and C inputs, as HBM views: either `dense` (fp32 or bf16
// [E * OC, C]) or MXFP4 `codes` (uint8 [E * OC, C / 2], two 4-bit E2M1 codes a byte, low nibble
// first) and `scales` (uint8 [E * OC, C / 32], one E8M0 byte per 32-value block).
struct ExpertWeights {
  int64_t experts = 0, out_features = 0, in_features = 0;  // E, OC, C
  View dense;
  View codes;
  View scales;
  bool mxfp4() const { return present(codes); }
};

// What is wrong with `offsets` as the split of `rows` rows among `experts` experts (E + 1 values,
// offsets[0] = 0, never decreasing, offsets[E] = rows), or "" when nothing is.
std::string offsets_problem(std::span<const int64_t> offsets, int64_t experts, int64_t rows);

// out[A, OC] rows of expert e = inp rows of expert e [A, C] @ weight[e]^T + bias[e, :]. `bias`
// ([E, OC] fp32) may be an empty View(). `compute` (kBF16 or kF32) is the dtype of the matmul
// operands in SBUF (MXFP4 weights are decoded into it); accumulation is fp32.
void expert_linear_forward(NeuronCore& core, const View& out, const View& inp,
                           const ExpertWeights& weight, const View& bias,
                           std::span<const int64_t> offsets, DType compute);

// Over each expert e's rows: dinp[A, C] += dout @ weight[e]; dweight[e] += dout^T @ inp;
// dbias[e, :] += column sums of dout. dweight is [E * OC, C] fp32, dbias [E, OC] fp32; `dinp` and
// `dbias` may be empty View()s. `weight` must be dense (MXFP4 weights are frozen).
void expert_linear_backward(NeuronCore& core, const View& dinp, const View& dweight,
                            const View& dbias, const View& dout, const View& inp,
                            const ExpertWeights& weight, std::span<const int64_t> offsets,
                            DType compute);

}  // namespace switchyard::backend::neuron
