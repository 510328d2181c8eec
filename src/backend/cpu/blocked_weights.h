// bf16 products of a continuous batch over weights kept in a layout made for them: column panels
// for bf16_panel_linear.h's kernel where the CPU has AVX-512 BF16 (and C is even), oneDNN's blocked
// layout otherwise.
//
// Handed the weights as stored ([OC, C] row-major), oneDNN's matmul rearranges them inside every
// call; at a decode batch's few dozen rows that costs about as much as the arithmetic
// (bench/kernels/bf16_packed_weights_bench.cc: 1.6-1.9x the rate at 32 rows on AVX-512 BF16).
// Serving's weights stay put, so the rearranged copy is made once per weight and stamp
// (ops::Linear::weight_stamp) and reused until the stamp changes. The copies cost memory, as much
// as the weights they copy, within a budget: beyond it, and for shapes neither layout takes, the
// caller runs the plain product.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace switchyard::backend::cpu {

class BlockedWeights {
 public:
  // Rows up to this many take the blocked copies (more rows amortise oneDNN's own rearranging).
  static constexpr int kMaxRows = 64;

  // An eighth of the machine's memory.
  static size_t default_budget();
  // budget_bytes: the most the copies may take together.
  explicit BlockedWeights(size_t budget_bytes = default_budget());

  // out[M, OC] (bf16) = inp[M, C] @ weight[OC, C]^T (+ bias[OC], fp32), all dense, through the
  // weight's blocked copy for `stamp` (made now if missing, replacing one of another stamp).
  // Returns false, having done nothing, where no copy can be used: the caller runs the plain one.
  bool linear(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias, int M,
              int C, int OC, uint64_t stamp);

  size_t bytes() const { return bytes_; }

 private:
  struct Copy {
    uint64_t stamp = 0;
    int C = 0, OC = 0;
    std::vector<uint16_t> panels;  // bf16_panel_linear.h's layout, where its kernel runs
    dnnl::memory blocked;          // otherwise oneDNN's; both empty where neither takes the shape
    size_t bytes = 0;
    bool usable() const { return !panels.empty() || bool(blocked); }
  };
  // The copy in bf16_panel_linear.h's layout, or oneDNN's blocked one, within the budget.
  void make_copy(Copy& copy, const uint16_t* weight);
  // The weight's usable copy for `stamp`, or null.
  const Copy* copy_for(const uint16_t* weight, int C, int OC, uint64_t stamp);
  // The product of M rows over a blocked weight of this shape; null where oneDNN has none.
  dnnl::matmul* primitive(const dnnl::memory::desc& blocked, int M, int C, int OC, bool bias);

  size_t budget_;
  size_t bytes_ = 0;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mutex_;
  std::unordered_map<const void*, Copy> copies_;
  // One primitive per rows, shape, bias and thread count (oneDNN plans its split for the threads).
  std::map<std::tuple<int, int, int, bool, int>, std::optional<dnnl::matmul>> primitives_;
};

}  // namespace switchyard::backend::cpu
