// Scheduler: the memory each instruction reads and writes, and what it costs (instruction_costs.h).
#include <algorithm>
#include <initializer_list>

#include "neuron/instruction_costs.h"
#include "neuron/scheduler.h"

namespace switchyard::neuron {

namespace {

// Records the per-partition scalar operands among `operands` (immediates read no memory).
void read_scalar_operands(const Memories& memories, std::initializer_list<const Operand*> operands,
                          Accesses& accesses) {
  for (const Operand* s : operands) {
    if (s->is_view()) accesses.read(memories.region_of(s->view()));
  }
}

}  // namespace

// ---- DMA.

void Scheduler::dma_copy(const View& dst, const View& src, int queue) {
  Accesses acc;
  acc.read(region_of(src));
  acc.write(region_of(dst));
  const int64_t n = src.elements();
  const int64_t src_bytes = n * dtype_bytes(src.dtype());
  const int64_t dst_bytes = n * dtype_bytes(dst.dtype());
  schedule_dma("dma_copy", queue, acc, std::max(src_bytes, dst_bytes),
               src.memory() == Memory::kHbm ? src_bytes : 0,
               dst.memory() == Memory::kHbm ? dst_bytes : 0, cost::dma_copy_efficiency(src));
}

void Scheduler::dma_gather(const View& dst, const View& table, const View& indices, int queue) {
  Accesses acc;
  acc.read(region_of(table));
  acc.read(region_of(indices));
  acc.write(region_of(dst));
  const int64_t n = dst.elements();
  const int64_t bytes = n * std::max(dtype_bytes(table.dtype()), dtype_bytes(dst.dtype()));
  schedule_dma("dma_gather", queue, acc, bytes, n * dtype_bytes(table.dtype()), 0, 1.0);
}

void Scheduler::dma_scatter(const char* op, const View& table, const View& src,
                            const View& indices, bool accumulate, int queue,
                            int64_t rows_written) {
  Accesses acc;
  acc.read(region_of(src));
  acc.read(region_of(indices));
  acc.write(region_of(table));
  // Only the rows written move (a skipped row's descriptor carries nothing).
  const int64_t n = rows_written * src.free_size();
  const int64_t table_bytes = n * dtype_bytes(table.dtype());
  const int64_t bytes = n * std::max(dtype_bytes(table.dtype()), dtype_bytes(src.dtype()));
  schedule_dma(op, queue, acc, bytes, accumulate ? table_bytes : 0, table_bytes, 1.0);
}

// ---- TensorE.

void Scheduler::matmul(const View& out, const View& stationary, const View& moving, bool start) {
  const Region out_region = region_of(out);
  Accesses stationary_access;
  stationary_access.read(region_of(stationary));
  Accesses acc;
  acc.read(region_of(stationary));
  acc.read(region_of(moving));
  if (!start) acc.read(out_region);
  acc.write(out_region);
  const cost::TensorCost c = cost::matmul_cost(config_, stationary, moving);
  schedule_tensor("matmul", stationary_access, acc, c.load_ns, c.multiply_ns);
  matmul_flops_ += 2.0 * static_cast<double>(stationary.partitions() * stationary.free_size() *
                                             moving.free_size());
}

void Scheduler::transpose(const View& out, const View& in) {
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  const cost::TensorCost c = cost::transpose_cost(config_, in);
  schedule_tensor("transpose", acc, acc, c.load_ns, c.multiply_ns);
}

// ---- ScalarE, VectorE, GpSimd.

void Scheduler::activation(const char* op, const View& out, const View& in,
                           const View* reduce_out, const Operand& scale, const Operand& bias) {
  Accesses acc;
  acc.read(region_of(in));
  read_scalar_operands(memories_, {&scale, &bias}, acc);
  acc.write(region_of(out));
  if (reduce_out) acc.write(region_of(*reduce_out));
  schedule_elementwise(op, Engine::kScalar, acc,
                       cost::activation_cycles(config_, out, in, reduce_out != nullptr));
}

void Scheduler::tensor_tensor(const View& out, const View& a, AluOp alu, const View& b,
                              Engine engine) {
  Accesses acc;
  acc.read(region_of(a));
  acc.read(region_of(b));
  acc.write(region_of(out));
  schedule_elementwise("tensor_tensor", engine, acc,
                       cost::tensor_tensor_cycles(config_, out, a, alu, b, engine));
}

void Scheduler::tensor_scalar(const View& out, const View& in, const Operand& s0,
                              const Operand& s1, Engine engine) {
  Accesses acc;
  acc.read(region_of(in));
  read_scalar_operands(memories_, {&s0, &s1}, acc);
  acc.write(region_of(out));
  schedule_elementwise("tensor_scalar", engine, acc,
                       cost::tensor_scalar_cycles(config_, out, in, engine));
}

void Scheduler::tensor_reduce(const View& out, AluOp alu, const View& in, Engine engine) {
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  schedule_elementwise("tensor_reduce", engine, acc,
                       cost::tensor_reduce_cycles(config_, alu, in, engine));
}

void Scheduler::tensor_copy(const View& out, const View& in, Engine engine) {
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  schedule_elementwise("tensor_copy", engine, acc,
                       cost::tensor_copy_cycles(config_, out, in, engine));
}

void Scheduler::reciprocal(const View& out, const View& in, Engine engine) {
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  schedule_elementwise("reciprocal", engine, acc,
                       cost::reciprocal_cycles(config_, out, in, engine));
}

void Scheduler::memset(const View& out, Engine engine) {
  Accesses acc;
  acc.write(region_of(out));
  schedule_elementwise("memset", engine, acc, cost::memset_cycles(config_, out, engine));
}

void Scheduler::select(const View& out, const View& predicate, const View& on_true,
                       const View& on_false, Engine engine) {
  Accesses acc;
  acc.read(region_of(predicate));
  acc.read(region_of(on_true));
  acc.read(region_of(on_false));
  acc.write(region_of(out));
  schedule_elementwise("select", engine, acc,
                       cost::select_cycles(config_, out, predicate, on_true, on_false, engine));
}

void Scheduler::mxfp4_decode(const View& out, const View& codes, const View& scales,
                             Engine engine) {
  Accesses acc;
  acc.read(region_of(codes));
  acc.read(region_of(scales));
  acc.write(region_of(out));
  schedule_elementwise("mxfp4_decode", engine, acc,
                       cost::mxfp4_decode_cycles(config_, out, codes, scales, engine));
}

void Scheduler::iota(const View& out) {
  Accesses acc;
  acc.write(region_of(out));
  schedule_elementwise("iota", Engine::kGpSimd, acc, cost::gpsimd_affine_cycles(out));
}

void Scheduler::affine_select(const View& out, const View& in) {
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  schedule_elementwise("affine_select", Engine::kGpSimd, acc, cost::gpsimd_affine_cycles(out));
}

}  // namespace switchyard::neuron
