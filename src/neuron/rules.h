// The hardware rules an instruction's operands must follow, as NKI states them: views inside live
// allocations, the memories each engine and DMA may touch, partition start alignment, free-size
// and PE-array limits, matching shapes, the dtypes each instruction takes, and PSUM accumulation
// groups. Checked before an instruction executes or is timed, in every execution mode; a broken
// rule throws Error naming the kernel, the instruction number, the instruction and the rule.
//
// The only state is the set of open accumulation groups, which matmul opens and closes.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "neuron/config.h"
#include "neuron/isa.h"
#include "neuron/kernel_context.h"
#include "neuron/memories.h"
#include "neuron/view.h"

namespace switchyard::neuron {

// The free dimensions tensor_reduce reduces: the innermost `reduced` of `in` (`inner` elements
// each), leaving `outer` elements per partition.
struct ReduceShape {
  int reduced = 0;
  int64_t inner = 1;
  int64_t outer = 1;
};
ReduceShape reduce_shape(const View& in, int axes);

class Rules {
 public:
  Rules(const CoreConfig& config, const Memories& memories, const KernelContext& context);

  [[noreturn]] void fail(const char* op, const std::string& message) const;

  // A view of a live allocation of this core that stays inside it (and, when `written`, has no
  // broadcast dimension).
  void check_view(const char* op, const char* role, const View& view, bool written) const;
  // `view` may be released: it is live and no accumulation group in it is open.
  void check_release(const View& view) const;

  // ---- Per instruction (the arguments of the NeuronCore method of the same name).
  void dma_copy(const View& dst, const View& src, int queue) const;
  void dma_gather(const View& dst, const View& table, const View& indices, int queue) const;
  void dma_scatter(const char* op, const View& table, const View& src, const View& indices,
                   int queue) const;
  // Also opens (start) and closes (stop) the accumulation group of `out`.
  void matmul(const View& out, const View& stationary, const View& moving, bool start, bool stop);
  void transpose(const View& out, const View& in) const;
  void activation(const char* op, const View& out, const View& in, const View* reduce_out,
                  const Operand& scale, const Operand& bias) const;
  void tensor_tensor(const View& out, const View& a, AluOp alu, const View& b,
                     Engine engine) const;
  void tensor_scalar(const View& out, const View& in, const Operand& s0, const Operand& s1,
                     Engine engine) const;
  void tensor_reduce(const View& out, AluOp alu, const View& in, int axes, Engine engine) const;
  void tensor_copy(const View& out, const View& in, Engine engine) const;
  void reciprocal(const View& out, const View& in, Engine engine) const;
  void memset(const View& out, Engine engine) const;
  void select(const View& out, const View& predicate, const View& on_true, const View& on_false,
              Engine engine) const;
  void mxfp4_decode(const View& out, const View& codes, const View& scales, Engine engine) const;
  void iota(const View& out, const std::vector<float>& free_steps) const;
  void affine_select(const View& out, const View& in, const std::vector<float>& free_steps,
                     AluOp cmp) const;

 private:
  // check_view, plus what an engine may access: SBUF/PSUM only (GpSimd: SBUF only), aligned
  // partition starts, free-size limits, and (when read) no open accumulation group.
  void check_engine_operand(const char* op, const char* role, Engine engine, const View& view,
                            bool written) const;
  void check_psum_closed(const char* op, const char* role, const View& view) const;
  // Per-partition scalar operands ([P, 1] columns of an instruction writing `out`; immediates
  // need nothing).
  void check_scalar_operands(const char* op, const char* role, Engine engine, const View& out,
                             std::initializer_list<const Operand*> operands) const;
  void check_engine(const char* op, Engine engine, bool allowed) const;
  // `in` covers as many partitions as `out` with the same free size.
  void check_input_shape(const char* op, const View& in, const View& out) const;
  // `steps` has one step per free dimension of `out` (iota, affine_select).
  void check_free_steps(const char* op, const View& out, const std::vector<float>& steps) const;

  const CoreConfig& config_;
  const Memories& memories_;
  const KernelContext& context_;
  std::vector<Region> open_groups_;  // exact out regions of open PSUM accumulation groups
};

}  // namespace switchyard::neuron
