// Views: a typed access pattern over one allocation of simulated memory (HBM, SBUF or PSUM).
//
// A view is [partition, free...] as in NKI. In SBUF/PSUM the partition dimension selects
// physical partitions (start, count); in HBM it is a row dimension with an element stride. The
// free part is an access pattern of up to four dimensions, each a size and an element stride,
// iterated row-major (last dimension innermost). Views are small values; they do not own memory
// and are checked against their allocation when an instruction uses them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "neuron/dtype.h"

namespace switchyard::neuron {

enum class Memory { kHbm, kSbuf, kPsum };
const char* memory_name(Memory memory);  // "hbm", "sbuf", "psum"

inline constexpr int kMaxFreeDims = 4;

// One dimension of an access pattern: `size` elements, `stride` elements apart.
struct Dim {
  int64_t size = 1;
  int64_t stride = 0;
};

class View {
 public:
  View() = default;

  Memory memory() const { return memory_; }
  int32_t allocation() const { return allocation_; }  // id within its NeuronCore
  DType dtype() const { return dtype_; }
  // First partition (SBUF/PSUM; always 0 for HBM, whose row offset is folded into offset_bytes).
  int64_t partition_start() const { return partition_start_; }
  int64_t partitions() const { return partitions_; }
  // Elements between consecutive rows of the partition dimension (HBM only; 0 elsewhere).
  int64_t partition_stride() const { return partition_stride_; }
  // Bytes from the start of the allocation (HBM) or from the start of each partition (SBUF/PSUM).
  int64_t offset_bytes() const { return offset_bytes_; }
  int free_dims() const { return free_dims_; }
  const Dim& free_dim(int d) const { return free_[d]; }
  std::vector<int64_t> free_shape() const;
  int64_t free_size() const;  // elements per partition
  int64_t elements() const { return partitions_ * free_size(); }
  // Whether each partition's elements are one run of consecutive elements.
  bool rows_contiguous() const;
  // Whether `other` addresses exactly the same elements in the same order and dtype.
  bool same_pattern(const View& other) const;

  // Sub-views. Each checks its arguments against this view's shape and throws Error otherwise.
  View rows(int64_t start, int64_t count) const;  // partition (row) sub-range
  View slice(int dim, int64_t start, int64_t count, int64_t step = 1) const;  // free dimension
  View cols(int64_t start, int64_t count) const;  // slice of the last free dimension
  // Splits free dimension `dim` into (size / inner, inner).
  View split(int dim, int64_t inner) const;
  // Merges all free dimensions into one; they must be contiguous with each other.
  View flatten() const;
  // Repeats a size-1 free dimension `size` times (stride 0); readable, not writable.
  View broadcast(int dim, int64_t size) const;
  // HBM only, one free dimension: exchanges rows and columns, so that loading a [rows, cols]
  // region transposed puts columns on partitions (a DMA transpose).
  View transposed() const;
  // HBM only: an arbitrary pattern relative to this view's start, in elements: the row dimension
  // and up to four free dimensions.
  View pattern(int64_t element_offset, Dim rows, const std::vector<Dim>& free) const;
  // Reinterprets the same bytes as another dtype of the same size in bytes.
  View bitcast(DType dtype) const;

  // "sbuf[0:128, 4x512 bfloat16 @1024]".
  std::string describe() const;

  // Used by NeuronCore to create views of fresh allocations.
  static View whole(Memory memory, int32_t allocation, DType dtype, int64_t offset_bytes,
                    int64_t partitions, int64_t partition_stride,
                    const std::vector<int64_t>& free_shape);

 private:
  Memory memory_ = Memory::kSbuf;
  int32_t allocation_ = -1;
  DType dtype_ = DType::kF32;
  int64_t offset_bytes_ = 0;
  int64_t partition_start_ = 0;
  int64_t partitions_ = 0;
  int64_t partition_stride_ = 0;
  int free_dims_ = 0;
  std::array<Dim, kMaxFreeDims> free_{};
};

// A per-partition scalar operand: an immediate, or a [P, 1] view broadcast along the free axis.
class Operand {
 public:
  Operand(float value) : value_(value) {}  // NOLINT: implicit, so calls read naturally
  Operand(const View& column) : is_view_(true), view_(column) {}  // NOLINT
  bool is_view() const { return is_view_; }
  float value() const { return value_; }
  const View& view() const { return view_; }

 private:
  bool is_view_ = false;
  float value_ = 0.0f;
  View view_;
};

}  // namespace switchyard::neuron
