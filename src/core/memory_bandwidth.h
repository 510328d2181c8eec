// Measures this machine's memory read bandwidth, the bound for streaming weights during generation.
#pragma once

namespace switchyard {

// Bytes per second reading a buffer much larger than the caches, with one thread per hardware
// thread; the best of a few passes.
double measure_read_bandwidth(double buffer_mib = 512, int passes = 8);

}  // namespace switchyard
