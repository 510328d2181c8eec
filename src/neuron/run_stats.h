// What a simulated run reports: when instructions ran, and the totals of a run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "neuron/config.h"

namespace switchyard::neuron {

struct EngineStats {
  std::string name;        // "TensorE", ..., "DMA3"
  double busy_ns = 0;      // time spent executing instructions
  double busy_cycles = 0;  // busy_ns at the engine's clock (DMA queues: TensorE clock)
  double utilization = 0;  // busy_ns / total_ns
  int64_t instructions = 0;
};

// When the most recently issued instruction ran (simulated nanoseconds).
struct InstructionTiming {
  const char* op = "";
  double start_ns = 0;  // began executing on its engine or queue
  double end_ns = 0;    // engine or queue free again
  double done_ns = 0;   // results visible to dependent instructions
};

struct RunStats {
  double total_ns = 0;               // when the last instruction's result is visible
  std::vector<EngineStats> engines;  // TensorE, VectorE, ScalarE, GpSimd, then each DMA queue
  int64_t instructions = 0;
  int64_t hbm_read_bytes = 0;
  int64_t hbm_write_bytes = 0;
  double hbm_gbps = 0;                // (read + write) / total_ns
  double matmul_flops = 0;            // 2*K*M*N summed over matmuls (transposes excluded)
  double tflops = 0;                  // matmul_flops / total_ns
  int64_t sbuf_high_water_bytes = 0;  // per partition
  int64_t psum_high_water_bytes = 0;  // per partition
  int64_t hbm_high_water_bytes = 0;

  // tflops as a percentage of the core's published peak for matmul inputs of `dtype`.
  double percent_of_peak(const CoreConfig& config, DType dtype) const {
    return 100.0 * tflops / config.peak_tflops(dtype);
  }
};

}  // namespace switchyard::neuron
