#include "core/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace switchyard {

double measure_read_bandwidth(double buffer_mib, int passes) {
  const size_t floats = static_cast<size_t>(buffer_mib * 1024 * 1024 / sizeof(float));
  std::unique_ptr<float[]> data(new float[floats]);
  std::memset(data.get(), 0, floats * sizeof(float));  // touch every page before timing
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<float> sums(threads * 16);  // one cache line per thread
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        size_t begin = floats * t / threads, end = floats * (t + 1) / threads;
        float acc[16] = {};
        for (size_t i = begin; i + 16 <= end; i += 16)
          for (int j = 0; j < 16; ++j) acc[j] += data[i + j];
        float total = 0;
        for (float a : acc) total += a;
        sums[t * 16] = total;
      });
    }
    for (std::thread& w : workers) w.join();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, floats * sizeof(float) / seconds);
  }
  return best;
}

}  // namespace switchyard
