// A Backend that forwards every call to another backend and times it, so that `bench train
// --profile` can say where a step's time goes, op by op, on any device.
//
// Each call waits for the wrapped backend to finish (synchronize()) before the clock stops: on
// asynchronous devices that serialises host and device, so profiled steps run somewhat slower than
// unprofiled ones; the shares are what matter. The wrapped backend must outlive this one.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace switchyard::backend {

struct KernelTime {
  std::string kernel;  // the op's name (backend/ops.h), e.g. "linear_backward", or a memory call
  int64_t calls = 0;
  double ms = 0;
};

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  // Time per op since construction or the last reset(), largest first.
  std::vector<KernelTime> kernel_times() const;
  void reset() { times_.clear(); }

  std::string name() const override { return inner_.name(); }
  std::string description() const override { return inner_.description(); }
  void* allocate(size_t bytes) override { return inner_.allocate(bytes); }
  void* allocate_zeroed(size_t bytes) override { return inner_.allocate_zeroed(bytes); }
  size_t make_resident(void* ptr, size_t bytes) override {
    return inner_.make_resident(ptr, bytes);
  }
  void release(void* ptr) override { inner_.release(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;
  void synchronize() override { inner_.synchronize(); }
  bool device_memory_is_host_memory() const override {
    return inner_.device_memory_is_host_memory();
  }
  std::optional<size_t> device_memory_peak_bytes() const override {
    return inner_.device_memory_peak_bytes();
  }
  Precision precision() const override { return inner_.precision(); }
  size_t attention_record_floats(const ops::AttentionSpec& spec, int batch,
                                 int seq) const override {
    return inner_.attention_record_floats(spec, batch, seq);
  }
  size_t attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                  int seq) const override {
    return inner_.attention_scratch_floats(spec, batch, seq);
  }
  bool supports(OpKind kind, std::span<const DType> dtypes) const override {
    return inner_.supports(kind, dtypes);
  }
  SimulatorBackend* simulator() override { return inner_.simulator(); }

#define SWITCHYARD_PROFILED_RUN(Op, name) \
  void run(const ops::Op& op) override { timed(#name, [&] { inner_.run(op); }); }
  SWITCHYARD_OPS(SWITCHYARD_PROFILED_RUN)
#undef SWITCHYARD_PROFILED_RUN

 private:
  // Runs fn() on the wrapped backend and charges its time (until the device is idle) to `kernel`.
  template <typename Fn>
  void timed(const char* kernel, Fn&& fn) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    charge(kernel, start);
  }
  void charge(const char* kernel, std::chrono::steady_clock::time_point start);

  Backend& inner_;
  std::map<std::string, KernelTime> times_;
};

}  // namespace switchyard::backend
