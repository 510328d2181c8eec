#include "cli/neuron_report.h"

#include <fmt/format.h>

namespace switchyard::cli {

void print_neuron_run(const neuron::CoreConfig& config, const neuron::RunStats& stats,
                      neuron::DType peak_dtype, double wall_s, const std::string& trace) {
  fmt::print("  simulated time   {:.2f} us ({} instructions)\n", stats.total_ns / 1e3,
             stats.instructions);
  fmt::print("  throughput       {:.2f} TFLOPS = {:.1f}% of the {:.0f} TFLOPS {} peak\n",
             stats.tflops, stats.percent_of_peak(config, peak_dtype),
             config.peak_tflops(peak_dtype), nki_dtype_name(peak_dtype));
  fmt::print("  HBM traffic      {:.1f} MiB read, {:.1f} MiB written, {:.1f} GB/s ({:.0f}% of the "
             "core's {:.1f} GB/s)\n",
             stats.hbm_read_bytes / 1048576.0, stats.hbm_write_bytes / 1048576.0, stats.hbm_gbps,
             100.0 * stats.hbm_gbps / config.hbm_core_gbps(), config.hbm_core_gbps());
  fmt::print("  SBUF high water  {} bytes per partition; PSUM {} bytes per partition\n",
             stats.sbuf_high_water_bytes, stats.psum_high_water_bytes);
  fmt::print("  simulation wall  {:.2f} s\n", wall_s);
  fmt::print("  engine       busy us   util   instructions\n");
  double dma_busy = 0;
  int64_t dma_count = 0;
  for (const neuron::EngineStats& e : stats.engines) {
    if (e.name.rfind("DMA", 0) == 0) {
      dma_busy += e.busy_ns;
      dma_count += e.instructions;
      continue;
    }
    fmt::print("  {:<10} {:>10.2f} {:>6.1f}% {:>12}\n", e.name, e.busy_ns / 1e3,
               100.0 * e.utilization, e.instructions);
  }
  fmt::print("  {:<10} {:>10.2f} {:>6.1f}% {:>12}   (average over {} queues)\n", "DMA",
             dma_busy / 1e3 / config.dma_queues,
             stats.total_ns > 0 ? 100.0 * dma_busy / config.dma_queues / stats.total_ns : 0.0,
             dma_count, config.dma_queues);
  if (!trace.empty()) fmt::print("  trace            {}\n", trace);
}

nlohmann::json neuron_run_json(const neuron::CoreConfig& config, const neuron::RunStats& stats,
                               neuron::DType peak_dtype, double wall_s) {
  nlohmann::json busy = nlohmann::json::object();
  nlohmann::json util = nlohmann::json::object();
  for (const neuron::EngineStats& e : stats.engines) {
    busy[e.name] = e.busy_cycles;
    util[e.name] = e.utilization;
  }
  return {
      {"target", config.target},
      {"simulated_us", stats.total_ns / 1e3},
      {"tflops", stats.tflops},
      {"peak_tflops", config.peak_tflops(peak_dtype)},
      {"percent_of_peak", stats.percent_of_peak(config, peak_dtype)},
      {"busy_cycles", busy},
      {"utilization", util},
      {"hbm_read_bytes", stats.hbm_read_bytes},
      {"hbm_write_bytes", stats.hbm_write_bytes},
      {"hbm_gbps", stats.hbm_gbps},
      {"percent_of_hbm_bandwidth", 100.0 * stats.hbm_gbps / config.hbm_core_gbps()},
      {"sbuf_high_water_bytes", stats.sbuf_high_water_bytes},
      {"psum_high_water_bytes", stats.psum_high_water_bytes},
      {"instructions", stats.instructions},
      {"wall_seconds", wall_s},
  };
}

}  // namespace switchyard::cli
