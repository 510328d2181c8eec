#include "neuron/view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace switchyard::neuron {

// The checks of the view methods call fail() rather than require(): kernels call these methods for
// nearly every instruction, and require() would format the description (describe()) even when the
// check passes.

const char* memory_name(Memory memory) {
  switch (memory) {
    case Memory::kHbm:
      return "hbm";
    case Memory::kSbuf:
      return "sbuf";
    case Memory::kPsum:
      return "psum";
  }
  return "?";
}

View View::whole(Memory memory, int32_t allocation, DType dtype, int64_t offset_bytes,
                 int64_t partitions, int64_t partition_stride,
                 const std::vector<int64_t>& free_shape) {
  require(free_shape.size() <= kMaxFreeDims, "a tile has at most {} free dimensions, got {}",
          kMaxFreeDims, free_shape.size());
  View v;
  v.memory_ = memory;
  v.allocation_ = allocation;
  v.dtype_ = dtype;
  v.offset_bytes_ = offset_bytes;
  v.partitions_ = partitions;
  v.partition_stride_ = partition_stride;
  v.free_dims_ = static_cast<int>(free_shape.size());
  int64_t stride = 1;
  for (int d = v.free_dims_ - 1; d >= 0; --d) {
    v.free_[d] = Dim{free_shape[d], stride};
    stride *= free_shape[d];
  }
  return v;
}

std::vector<int64_t> View::free_shape() const {
  std::vector<int64_t> shape;
  for (int d = 0; d < free_dims_; ++d) shape.push_back(free_[d].size);
  return shape;
}

int64_t View::free_size() const {
  int64_t n = 1;
  for (int d = 0; d < free_dims_; ++d) n *= free_[d].size;
  return n;
}

View View::rows(int64_t start, int64_t count) const {
  if (start < 0 || count <= 0 || start + count > partitions_)
    fail("rows({}, {}) is outside {} (which has {} partitions)", start, count, describe(),
         partitions_);
  View v = *this;
  if (memory_ == Memory::kHbm) {
    v.offset_bytes_ += start * partition_stride_ * dtype_bytes(dtype_);
  } else {
    v.partition_start_ += start;
  }
  v.partitions_ = count;
  return v;
}

View View::slice(int dim, int64_t start, int64_t count, int64_t step) const {
  if (dim < 0 || dim >= free_dims_)
    fail("slice: free dimension {} does not exist in {}", dim, describe());
  if (step < 1 || start < 0 || count <= 0 || start + (count - 1) * step >= free_[dim].size)
    fail("slice(dim {}, start {}, count {}, step {}) is outside {} (size {})", dim, start, count,
         step, describe(), free_[dim].size);
  View v = *this;
  v.offset_bytes_ += start * free_[dim].stride * dtype_bytes(dtype_);
  v.free_[dim] = Dim{count, free_[dim].stride * step};
  return v;
}

View View::cols(int64_t start, int64_t count) const {
  if (free_dims_ < 1) fail("cols: {} has no free dimension", describe());
  return slice(free_dims_ - 1, start, count);
}

View View::split(int dim, int64_t inner) const {
  if (dim < 0 || dim >= free_dims_)
    fail("split: free dimension {} does not exist in {}", dim, describe());
  if (free_dims_ >= kMaxFreeDims)
    fail("split: {} already has {} free dimensions", describe(), kMaxFreeDims);
  require(inner > 0 && free_[dim].size % inner == 0,
          "split: dimension {} of size {} is not a multiple of {}", dim, free_[dim].size, inner);
  View v = *this;
  for (int d = free_dims_; d > dim + 1; --d) v.free_[d] = v.free_[d - 1];
  v.free_[dim] = Dim{free_[dim].size / inner, free_[dim].stride * inner};
  v.free_[dim + 1] = Dim{inner, free_[dim].stride};
  v.free_dims_ += 1;
  return v;
}

View View::flatten() const {
  View v = *this;
  if (free_dims_ <= 1) return v;
  for (int d = 0; d + 1 < free_dims_; ++d) {
    if (free_[d].stride != free_[d + 1].stride * free_[d + 1].size)
      fail("flatten: free dimensions of {} are not contiguous with each other", describe());
  }
  v.free_[0] = Dim{free_size(), free_[free_dims_ - 1].stride};
  v.free_dims_ = 1;
  return v;
}

View View::broadcast(int dim, int64_t size) const {
  if (dim < 0 || dim >= free_dims_ || free_[dim].size != 1 || size < 1)
    fail("broadcast: dimension {} of {} must exist and have size 1", dim, describe());
  View v = *this;
  v.free_[dim] = Dim{size, 0};
  return v;
}

View View::transposed() const {
  if (memory_ != Memory::kHbm || free_dims_ != 1)
    fail("transposed: needs an HBM view with one free dimension, got {} (transpose on-chip data "
         "with NeuronCore::transpose)",
         describe());
  View v = *this;
  v.partitions_ = free_[0].size;
  v.partition_stride_ = free_[0].stride;
  v.free_[0] = Dim{partitions_, partition_stride_};
  return v;
}

View View::pattern(int64_t element_offset, Dim rows, const std::vector<Dim>& free) const {
  if (memory_ != Memory::kHbm)
    fail("pattern: only HBM views take raw access patterns, got {}", describe());
  require(free.size() <= kMaxFreeDims, "pattern: at most {} free dimensions, got {}", kMaxFreeDims,
          free.size());
  require(element_offset >= 0 && rows.size >= 1 && rows.stride >= 0,
          "pattern: offset and strides must be non-negative and sizes positive");
  View v = *this;
  v.offset_bytes_ += element_offset * dtype_bytes(dtype_);
  v.partitions_ = rows.size;
  v.partition_stride_ = rows.stride;
  v.free_dims_ = static_cast<int>(free.size());
  for (size_t d = 0; d < free.size(); ++d) {
    require(free[d].size >= 1 && free[d].stride >= 0,
            "pattern: free dimension {} needs size >= 1 and stride >= 0", d);
    v.free_[d] = free[d];
  }
  return v;
}

View View::bitcast(DType dtype) const {
  require(dtype_bytes(dtype) == dtype_bytes(dtype_), "bitcast: {} and {} differ in size",
          nki_dtype_name(dtype_), nki_dtype_name(dtype));
  View v = *this;
  v.dtype_ = dtype;
  return v;
}

std::string View::describe() const {
  // fmt::join rather than string appends: GCC 12 warns (-Wrestrict, a false positive) on those.
  std::vector<int64_t> shape = free_shape();
  if (shape.empty()) shape.push_back(1);
  if (memory_ == Memory::kHbm) {
    return fmt::format("hbm[{} rows, {} {} @{}]", partitions_, fmt::join(shape, "x"),
                       nki_dtype_name(dtype_), offset_bytes_);
  }
  return fmt::format("{}[{}:{}, {} {} @{}]", memory_name(memory_), partition_start_,
                     partition_start_ + partitions_, fmt::join(shape, "x"), nki_dtype_name(dtype_),
                     offset_bytes_);
}

bool View::rows_contiguous() const {
  int64_t expected = 1;
  for (int d = free_dims_ - 1; d >= 0; --d) {
    if (free_[d].size > 1 && free_[d].stride != expected) return false;
    expected *= free_[d].size;
  }
  return true;
}

bool View::same_pattern(const View& o) const {
  if (memory_ != o.memory_ || allocation_ != o.allocation_ || dtype_ != o.dtype_ ||
      offset_bytes_ != o.offset_bytes_ || partition_start_ != o.partition_start_ ||
      partitions_ != o.partitions_ || partition_stride_ != o.partition_stride_ ||
      free_dims_ != o.free_dims_)
    return false;
  for (int d = 0; d < free_dims_; ++d) {
    if (free_[d].size != o.free_[d].size || free_[d].stride != o.free_[d].stride) return false;
  }
  return true;
}

}  // namespace switchyard::neuron
