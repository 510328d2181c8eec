// The published NeuronCore cost model, one named constant per figure.
//
// Source for all rows: /work/shared/reference/neuroncore.md, "Published cost model" (NKI
// performance guide and nki.isa docs, NeuronCore-v2 unless noted). Constants marked "assumed"
// fill a gap the sources leave; docs/neuron_simulator.md lists them. Engine costs are in cycles of
// that engine's clock (CoreConfig), DMA costs in bytes and nanoseconds.
#pragma once

#include <cstdint>

namespace switchyard::neuron::cost {

// TensorE. MultiplyMoving issue interval = max(N_moving, 64) cycles (perf guide; the ISA docs'
// max(min(64, N_stationary), N_moving) agrees whenever the stationary tile has >= 64 columns, and
// we use the perf guide's simpler form).
inline constexpr int64_t kMatmulMinCycles = 64;
// fp32 inputs take 4x as long (perf guide; 23 vs 92 TFLOPS).
inline constexpr int64_t kMatmulFp32Factor = 4;
// fp8 on v3 streams 4x128 inputs per cycle instead of 2x128: half the cycles (arch; 158 vs 79).
inline constexpr int64_t kMatmulFp8V3Divisor = 2;
// LoadStationary is up to 4x faster than a MultiplyMoving of the same size and overlaps the
// previous multiply in the background (perf guide).
inline constexpr int64_t kLoadStationarySpeedup = 4;

// VectorE. ~N cycles for one input tensor, ~2N for two (perf guide).
inline constexpr int64_t kVectorMinIssueCycles = 64;       // minimum issue interval (perf guide)
inline constexpr int64_t kVectorFixedLatencyCycles = 100;  // fixed overhead when dependent
inline constexpr int64_t kVectorReciprocalFactor = 8;      // reciprocal 8N (perf guide)
// bf16 tensor_reduce add/max: N/2 (perf guide).
inline constexpr int64_t kVectorBf16ReduceDivisor = 2;
// v3 fast mode: 4x for bf16/fp16 (perf guide); 2x for other dtypes (arch: 512 vs 256 elements
// per cycle).
inline constexpr int64_t kVectorFastModeDivisor16 = 4;
inline constexpr int64_t kVectorFastModeDivisorOther = 2;

// ScalarE activation: max(64, N); a fused free-axis reduction adds ~64 (perf guide).
inline constexpr int64_t kScalarMinCycles = 64;
inline constexpr int64_t kScalarReduceCycles = 64;
// Assumed: ScalarE's fixed latency equals VectorE's published ~100 cycles (no published figure).
inline constexpr int64_t kScalarFixedLatencyCycles = 100;

// GpSimd iota / affine_select ~150 + N (perf guide). Assumed: GpSimd elementwise ops cost
// 150 + N per input tensor (the same form; no separate figure is published).
inline constexpr int64_t kGpSimdFixedCycles = 150;

// MXFP4 decode (mxfp4_decode), assumed: no figure is published, because NeuronCore-v2/v3 have no
// FP4 support (v4's TensorE multiplies MXFP4 itself, nki.isa.nc_matmul_mx, and needs no decode).
// On v2/v3 a kernel needs three element passes over the decoded values, so the instruction costs
// three elementwise passes of N (the decoded values per partition) on its engine, without fast
// mode (its inputs are uint8):
//   1. unpack: each byte's low and high nibble into a code of its own (a shift and a mask),
//   2. map: each 4-bit E2M1 code to its value (a 16-entry table lookup),
//   3. scale: multiply by the block's 2^(s - 127), the E8M0 byte broadcast along its block.
// Optimistic for VectorE, which has no table lookup and would map codes arithmetically in more
// passes; GpSimd's SIMD cores look up 16-entry tables with a byte shuffle.
inline constexpr int64_t kMxfp4DecodePasses = 3;

// SBUF/PSUM access: an innermost stride over 16 bytes halves engine bandwidth (perf guide).
inline constexpr int64_t kWideStrideBytes = 16;
inline constexpr int64_t kWideStrideFactor = 2;

// DMA: a transfer below 32 KiB does not reach full bandwidth (perf guide). Modelled as: each
// transfer occupies its queue for at least the time a 32 KiB transfer takes.
inline constexpr int64_t kDmaFullBandwidthBytes = 32 * 1024;
// DMA transpose (element-granular source) reaches <= 90% of peak HBM->SBUF and <= 50%
// SBUF->SBUF (perf guide).
inline constexpr double kDmaTransposeEfficiencyFromHbm = 0.9;
inline constexpr double kDmaTransposeEfficiencyFromSbuf = 0.5;

}  // namespace switchyard::neuron::cost
