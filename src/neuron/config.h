// Machine model of one NeuronCore: engine clocks and throughputs, memories, DMA, and the
// chip-level figures a single simulated core takes its share of.
//
// Every figure comes from /work/shared/reference/neuroncore.md (AWS Neuron SDK architecture pages,
// NKI performance guide, nki.isa docs; usable SBUF sizes from leanprover/KLR) and is commented at
// its definition in config.cc. The simulator models ONE core; chip-wide resources (HBM capacity and
// bandwidth) are divided evenly among the chip's cores, as when every core runs the same
// data-parallel program.
#pragma once

#include <cstdint>
#include <string>

#include "neuron/dtype.h"

namespace switchyard::neuron {

struct CoreConfig {
  std::string target;     // "trn1" or "trn2"
  std::string core_name;  // "NeuronCore-v2" or "NeuronCore-v3"
  int cores_per_chip = 0;

  // Engine clocks in GHz.
  double tensor_ghz = 0;
  double vector_ghz = 0;
  double scalar_ghz = 0;
  double gpsimd_ghz = 0;

  // TensorE: a pe_rows x pe_cols systolic array. fp8 at twice the bf16 rate on v3 ("dense fp8
  // 4x128 in"); fp32 at a quarter.
  int pe_rows = 128;
  int pe_cols = 128;
  bool fp8_double_rate = false;
  // Published per-core peaks (TFLOPS), used for "percent of peak".
  double peak_tflops_bf16 = 0;
  double peak_tflops_fp8 = 0;
  double peak_tflops_fp32 = 0;

  // VectorE v3 "fast mode": contiguous bf16/fp16 SBUF tensor_copy / tensor_scalar at 4x (and 2x
  // for other dtypes, from "512 bf16/fp16 elems/cycle, 256 other dtypes").
  bool vector_fast_mode = false;
  // v2 only: VectorE and GpSimd share the SBUF port, VectorE and ScalarE the PSUM port.
  bool port_conflicts = false;

  // On-chip memories.
  int partitions = 128;
  int64_t sbuf_partition_bytes = 0;      // usable by kernels
  int64_t psum_partition_bytes = 16384;  // 8 banks of 2 KiB
  int64_t psum_bank_bytes = 2048;
  int psum_banks = 8;

  // HBM (per chip) and DMA (per core).
  int64_t hbm_chip_bytes = 0;
  double hbm_chip_gbps = 0;  // GB/s = bytes per ns
  int dma_queues = 16;
  double dma_queue_gbps = 0;
  double dma_fixed_latency_ns = 0;

  int64_t hbm_core_bytes() const { return hbm_chip_bytes / cores_per_chip; }
  double hbm_core_gbps() const { return hbm_chip_gbps / cores_per_chip; }
  // Published peak for matmuls whose inputs have this dtype.
  double peak_tflops(DType dtype) const;
};

CoreConfig trn1_config();
CoreConfig trn2_config();
// "trn1" or "trn2"; throws Error naming the unknown target otherwise.
CoreConfig config_for_target(const std::string& target);

}  // namespace switchyard::neuron
