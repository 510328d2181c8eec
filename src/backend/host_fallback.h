// Running an op with the CPU reference on the host, for a backend that does not implement it.
//
// Where device memory is host memory and the reference takes the operands' dtypes as they are
// (CpuBackend::supports), the reference runs on the tensors in place. Otherwise (device memory of
// its own, or bf16 operands the reference does not compute in) every operand is staged: the
// device ranges the operands cover are merged where they overlap (q, k and v as views of one
// projection; an output that aliases an input), each merged range is copied to the host once
// (bf16 and fp16 widened to fp32, which the reference computes in), the operands are re-pointed
// into those copies with their strides kept, the reference runs, and the ranges an output touches
// are copied back (narrowed again). On host memory only the ranges that widen are copied: the
// others (fp32 statistics, int32 ids, an attention record) are used where they are.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace switchyard::backend {

// The CPU backend every fallback runs on.
Backend& host_reference_backend();

// A host buffer for staging, taken from the calling thread's pool of released ones where one fits:
// the same activations are staged op after op, step after step, and a fresh buffer would fault
// its pages in (the kernel zeroing each) every time, which costs more than the widening itself.
// Released buffers are kept up to a cap (host_fallback.cc), larger leftovers freed.
class StagingBuffer {
 public:
  StagingBuffer() = default;
  explicit StagingBuffer(size_t bytes);
  StagingBuffer(StagingBuffer&&) = default;
  StagingBuffer& operator=(StagingBuffer&& other);
  ~StagingBuffer();
  uint8_t* get() const { return data_.get(); }

 private:
  void release();
  std::unique_ptr<uint8_t[]> data_;
  size_t bytes_ = 0;
};

// Host copies of the device memory a set of operands covers.
class HostStaging {
 public:
  explicit HostStaging(Backend& device) : device_(device) {}
  // Registers the memory `t` covers, and whether the op writes it.
  void add(const Tensor& t, ops::Access access);
  // Copies every registered range to the host.
  void load();
  // `t` re-pointed into its host copy (fp32 where the device holds bf16 or fp16).
  Tensor host_view(const Tensor& t) const;
  // Copies the written ranges back to the device.
  void store();

 private:
  struct Range {
    uintptr_t begin = 0, end = 0;  // device bytes [begin, end)
    DType dtype = DType::kU8;      // element type of the memory (the first operand's)
    bool written = false;
    bool in_place = false;         // device memory is host memory and needs no widening
    StagingBuffer host;            // widened to fp32 for bf16 and fp16
  };
  const Range& range_of(uintptr_t address) const;
  static bool widens(DType dtype) { return dtype == DType::kBF16 || dtype == DType::kF16; }

  Backend& device_;
  std::vector<Range> ranges_;
};

template <typename Op>
void Backend::run_on_host(const Op& op) {
  on_host_fallback(OpTraits<Op>::kind);
  Backend& reference = host_reference_backend();
  if (device_memory_is_host_memory() && reference.supports(op)) {
    reference.run(op);
    return;
  }
  HostStaging staging(*this);
  op.for_each_tensor([&](const Tensor& t, ops::Access access) { staging.add(t, access); });
  staging.load();
  Op host = op;
  // `host` is this function's own copy, so re-pointing its operands in place is sound.
  host.for_each_tensor([&](const Tensor& t, ops::Access) {
    const_cast<Tensor&>(t) = staging.host_view(t);
  });
  reference.run(host);
  staging.store();
}

}  // namespace switchyard::backend
