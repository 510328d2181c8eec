// The arithmetic of each instruction, on the values the memories hold (functional mode).
//
// Engines compute in fp32 and round results to the destination dtype (round-to-nearest-even);
// matmul multiplies fp32 copies of the stored operands and accumulates in fp32; same-dtype DMA
// copies are bit-exact. Operands have already passed the rules (rules.h); what is left to check
// here is what only data can tell: gather and scatter indices. Big instructions spread their
// partitions over the OpenMP threads (parallel.h), each element computed by one thread in a
// fixed order, so results never depend on the thread count. Per-instruction working buffers are
// reused, so no instruction allocates.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "neuron/isa.h"
#include "neuron/memories.h"
#include "neuron/rules.h"
#include "neuron/view.h"

namespace switchyard::neuron {

class Executor {
 public:
  Executor(Memories& memories, const Rules& rules);

  // ---- Instructions (the arguments of the NeuronCore method of the same name).
  void dma_copy(const View& dst, const View& src);
  void dma_gather(const View& dst, const View& table, const View& indices);
  // Returns the rows written (a row with a negative index is skipped under NegativeIndex::kSkip).
  int64_t dma_scatter(const char* op, const View& table, const View& src, const View& indices,
                      bool accumulate, NegativeIndex negative);
  void matmul(const View& out, const View& stationary, const View& moving, bool start);
  void transpose(const View& out, const View& in);
  void activation(const View& out, Activation function, const View& in, const View* reduce_out,
                  const Operand& scale, const Operand& bias);
  void tensor_tensor(const View& out, const View& a, AluOp alu, const View& b);
  void tensor_scalar(const View& out, const View& in, AluOp op0, const Operand& s0, AluOp op1,
                     const Operand& s1);
  void tensor_reduce(const View& out, AluOp alu, const View& in, int axes);
  void tensor_copy(const View& out, const View& in);
  void reciprocal(const View& out, const View& in);
  void memset(const View& out, float value);
  void select(const View& out, const View& predicate, const View& on_true, const View& on_false);
  void mxfp4_decode(const View& out, const View& codes, const View& scales);
  void iota(const View& out, float base, float partition_step, const std::vector<float>& free_steps);
  void affine_select(const View& out, const View& in, float base, float partition_step,
                     const std::vector<float>& free_steps, AluOp cmp, float fill);

  // Host access: a view's elements as fp32 (partition-major, free dims row-major), and back
  // (rounded to the view's dtype). The view's memory must have bytes.
  void load(const View& view, float* out) const;
  void store(const View& view, const float* values);

 private:
  // The same for partition (row) p of the view alone.
  void load_partition(const View& view, int64_t p, float* out) const;
  void store_partition(const View& view, int64_t p, const float* values);
  // Whether an elementwise instruction may load, compute and store one partition at a time
  // (while the row is in the host's cache) and give the same result as loading every input
  // first: true unless an input shares physical partitions with `out` at a different index.
  // Engine operands are in SBUF/PSUM, where partitions never share bytes.
  static bool rowwise_safe(const View& out, std::initializer_list<const View*> inputs);
  // The functional part of an elementwise instruction writing `out`: row(p, dst) reads partition
  // p of the inputs and writes out's row p, as fp32 values, to dst: out's own memory when out is
  // fp32 and that is safe, otherwise result + p * out.free_size(), stored (rounded) afterwards.
  // Fused per partition when rowwise_safe, otherwise every row is computed before any is stored.
  // Defined in executor_elementwise.cc, its only user.
  template <typename RowFn>
  void compute_rows(const View& out, std::initializer_list<const View*> inputs, float* result,
                    RowFn&& row);
  // Row p of `in` as fp32 values: its own memory when it is fp32 and contiguous, otherwise
  // loaded into `staging`.
  const float* input_row(const View& in, int64_t p, float* staging) const;
  // Row p of `in` written to dst as fp32 values (nothing to do when dst already is that row).
  void load_row(const View& in, int64_t p, float* dst) const;
  // Raw element bytes of a view, in the same order (bit-exact copies).
  void gather_bytes(const View& view, uint8_t* out) const;
  void scatter_bytes(const View& view, const uint8_t* in);
  void gather_partition_bytes(const View& view, int64_t p, uint8_t* out) const;
  void scatter_partition_bytes(const View& view, int64_t p, const uint8_t* in);
  // dst = src (with a dtype cast) one partition at a time, while its row is in cache, when one end
  // is in SBUF and the two are different allocations (so no row can overwrite another's source);
  // false, with nothing copied, otherwise.
  bool copy_by_partition(const View& dst, const View& src);
  // A per-partition scalar operand as `partitions` values, in scratch buffer `scratch_index`.
  std::span<float> load_operand(const Operand& s, int64_t partitions, int scratch_index) const;
  // Uninitialised fp32 working storage for an instruction's operands: buffer `index` (0..3) of
  // `n` values, reused by every instruction so that none allocates. An instruction uses distinct
  // indices for buffers it holds at once; the span lives until the next call with that index.
  std::span<float> scratch(int index, int64_t n) const;
  // The index at partition p of an int32 [P, 1] index tile.
  int32_t index_at(const View& indices, int64_t p) const;
  uint8_t* element_base(const View& view, int64_t p) const {
    return memories_.element_base(view, p);
  }

  Memories& memories_;
  const Rules& rules_;
  mutable std::array<std::vector<float>, 4> scratch_;
};

}  // namespace switchyard::neuron
