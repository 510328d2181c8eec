// What a simulated span says bounds it (backend/simulated_span.h), from synthetic reports: HBM
// traffic near the core's share of the chip's bandwidth, a busy engine, VectorE and GpSimd taking
// turns on a shared SBUF port, or none of these (latency).
#include <gtest/gtest.h>

#include <string>

#include "backend/simulated_span.h"

namespace switchyard::backend {
namespace {

// A report of 1 ms after an empty one, with these engine busy fractions and HBM GB/s.
SimulatedSpan span_of(double tensor, double vector, double gpsimd, double dma, double hbm_gbps,
                      bool shared_port = false) {
  SimulationReport before, after;
  for (SimulationReport* r : {&before, &after}) {
    r->peak_hbm_gbps = 100;
    r->shared_sbuf_port = shared_port;
    r->engines = {{"TensorE", 0}, {"VectorE", 0}, {"ScalarE", 0}, {"GpSimd", 0}, {"DMA0", 0}};
  }
  const double ns = 1e6;
  after.total_ns = ns;
  after.engines = {{"TensorE", tensor * ns}, {"VectorE", vector * ns}, {"ScalarE", 0},
                   {"GpSimd", gpsimd * ns}, {"DMA0", dma * ns}};
  after.hbm_bytes = hbm_gbps * ns;
  return simulated_span(before, after, 1);
}

TEST(SimulatedSpan, NamesWhatBoundsTheSpan) {
  EXPECT_EQ(span_of(0.2, 0.1, 0.1, 0.9, 75).bottleneck, "HBM bandwidth");
  EXPECT_EQ(span_of(0.9, 0.1, 0.1, 0.3, 30).bottleneck, "TensorE");
  EXPECT_EQ(span_of(0.2, 0.1, 0.1, 0.65, 50).bottleneck, "DMA");
  EXPECT_EQ(span_of(0.3, 0.2, 0.1, 0.3, 30).bottleneck, "latency");
  EXPECT_EQ(span_of(0.3, 0.2, 0.1, 0.3, 30).busiest, "TensorE");
}

TEST(SimulatedSpan, EnginesSharingAPortAddTheirBusyTimes) {
  // Each half busy: on separate ports that leaves room (latency); on one port it is full.
  EXPECT_EQ(span_of(0.1, 0.48, 0.48, 0.1, 30).bottleneck, "latency");
  EXPECT_EQ(span_of(0.1, 0.48, 0.48, 0.1, 30, /*shared_port=*/true).bottleneck, "VectorE + GpSimd");
  // A busier engine elsewhere still wins.
  EXPECT_EQ(span_of(0.9, 0.3, 0.3, 0.1, 30, true).bottleneck, "TensorE");
}

}  // namespace
}  // namespace switchyard::backend
