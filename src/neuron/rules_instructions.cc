// Rules: what each instruction requires of its operands.
#include <fmt/format.h>

#include <algorithm>

#include "neuron/rules.h"

namespace switchyard::neuron {

namespace {

bool is_comparison(AluOp op) {
  return op == AluOp::kIsEqual || op == AluOp::kNotEqual || op == AluOp::kIsGreater ||
         op == AluOp::kIsGreaterEqual || op == AluOp::kIsLess || op == AluOp::kIsLessEqual;
}

// Float types only: integer tiles (int32 ids, uint8 MXFP4 codes) are not numbers TensorE takes.
bool is_matmul_dtype(DType d) { return is_float(d); }

bool vector_or_gpsimd(Engine engine) {
  return engine == Engine::kVector || engine == Engine::kGpSimd;
}

}  // namespace

// ---- DMA.

void Rules::dma_copy(const View& dst, const View& src, int queue) const {
  const char* op = "dma_copy";
  check_view(op, "destination", dst, true);
  check_view(op, "source", src, false);
  if (dst.memory() == Memory::kPsum || src.memory() == Memory::kPsum)
    fail(op,
         "DMA endpoints must be in HBM or SBUF, not PSUM (evacuate PSUM with VectorE or ScalarE)");
  if (queue != kAnyQueue && (queue < 0 || queue >= config_.dma_queues))
    fail(op, fmt::format("DMA queue {} does not exist (this core has queues 0..{})", queue,
                         config_.dma_queues - 1));
  if (dst.partitions() != src.partitions() || dst.free_size() != src.free_size())
    fail(op, fmt::format("destination {} and source {} differ in shape ({} x {} vs {} x {} "
                         "elements)",
                         dst.describe(), src.describe(), dst.partitions(), dst.free_size(),
                         src.partitions(), src.free_size()));
}

void Rules::dma_gather(const View& dst, const View& table, const View& indices, int queue) const {
  const char* op = "dma_gather";
  check_view(op, "destination", dst, true);
  check_view(op, "table", table, false);
  check_view(op, "indices", indices, false);
  if (table.memory() != Memory::kHbm || dst.memory() != Memory::kSbuf ||
      indices.memory() != Memory::kSbuf)
    fail(op, "gather reads an HBM table into SBUF with SBUF indices");
  if (indices.dtype() != DType::kI32 || indices.free_size() != 1)
    fail(op, fmt::format("indices {} must be an int32 [P, 1] tile", indices.describe()));
  if (indices.partitions() != dst.partitions() || dst.free_size() != table.free_size())
    fail(op, fmt::format("destination {} must be [{} indices, {} table columns]", dst.describe(),
                         indices.partitions(), table.free_size()));
  if (queue != kAnyQueue && (queue < 0 || queue >= config_.dma_queues))
    fail(op, fmt::format("DMA queue {} does not exist", queue));
}

void Rules::dma_scatter(const char* op, const View& table, const View& src, const View& indices,
                        int queue) const {
  check_view(op, "table", table, true);
  check_view(op, "source", src, false);
  check_view(op, "indices", indices, false);
  if (table.memory() != Memory::kHbm || src.memory() != Memory::kSbuf ||
      indices.memory() != Memory::kSbuf)
    fail(op, "scatter writes SBUF rows into an HBM table with SBUF indices");
  if (indices.dtype() != DType::kI32 || indices.free_size() != 1)
    fail(op, fmt::format("indices {} must be an int32 [P, 1] tile", indices.describe()));
  if (indices.partitions() != src.partitions() || src.free_size() != table.free_size())
    fail(op, fmt::format("source {} must be [{} indices, {} table columns]", src.describe(),
                         indices.partitions(), table.free_size()));
  if (queue != kAnyQueue && (queue < 0 || queue >= config_.dma_queues))
    fail(op, fmt::format("DMA queue {} does not exist", queue));
}

// ---- TensorE.

void Rules::matmul(const View& out, const View& stationary, const View& moving, bool start,
                   bool stop) {
  const char* op = "matmul";
  check_engine_operand(op, "out", Engine::kTensor, out, true);
  check_engine_operand(op, "stationary", Engine::kTensor, stationary, false);
  check_engine_operand(op, "moving", Engine::kTensor, moving, false);
  if (out.memory() != Memory::kPsum || out.dtype() != DType::kF32)
    fail(op, fmt::format("out {} must be an fp32 PSUM tile", out.describe()));
  if (stationary.memory() != Memory::kSbuf || moving.memory() != Memory::kSbuf)
    fail(op, "stationary and moving operands must be in SBUF");
  if (!is_matmul_dtype(stationary.dtype()) || !is_matmul_dtype(moving.dtype()))
    fail(op, "matmul inputs must be fp8 (e4m3/e5m2), bf16, fp16 or fp32, not int32 or uint8 "
             "(MXFP4 codes are decoded with mxfp4_decode first)");
  bool both_fp8 = is_fp8(stationary.dtype()) && is_fp8(moving.dtype());
  if (stationary.dtype() != moving.dtype() && !both_fp8)
    fail(op, fmt::format("stationary ({}) and moving ({}) must have the same dtype",
                         nki_dtype_name(stationary.dtype()), nki_dtype_name(moving.dtype())));
  int64_t K = stationary.partitions();
  int64_t M = stationary.free_size();
  int64_t N = moving.free_size();
  if (moving.partitions() != K)
    fail(op, fmt::format("stationary has K = {} partitions but moving has {}", K,
                         moving.partitions()));
  if (K > config_.pe_rows) fail(op, fmt::format("K = {} exceeds {}", K, config_.pe_rows));
  if (M > config_.pe_cols)
    fail(op, fmt::format("stationary free size M = {} exceeds {}", M, config_.pe_cols));
  int64_t max_n = config_.psum_bank_bytes / 4;
  if (N > max_n)
    fail(op, fmt::format("moving free size N = {} exceeds {} (one PSUM bank of fp32)", N, max_n));
  if (out.partitions() != M || out.free_size() != N)
    fail(op, fmt::format("out {} must be [M = {}, N = {}]", out.describe(), M, N));
  const Region out_region = memories_.region_of(out);
  int64_t first_byte = out.offset_bytes();
  int64_t last_byte = out_region.b1 - 1;
  if (first_byte / config_.psum_bank_bytes != last_byte / config_.psum_bank_bytes)
    fail(op, fmt::format("out {} crosses a PSUM bank boundary (bytes {}..{} of each "
                         "partition; banks are {} bytes)",
                         out.describe(), first_byte, last_byte, config_.psum_bank_bytes));

  // Accumulation groups.
  auto same = [&](const Region& g) {
    return g.allocation == out_region.allocation && g.contains(out_region) &&
           out_region.contains(g);
  };
  auto group = std::find_if(open_groups_.begin(), open_groups_.end(), same);
  for (const Region& g : open_groups_) {
    if (!same(g) && g.overlaps(out_region))
      fail(op, fmt::format("out {} overlaps a different open accumulation group", out.describe()));
  }
  if (start) {
    if (group == open_groups_.end()) {
      if (static_cast<int>(open_groups_.size()) >= config_.psum_banks)
        fail(op, fmt::format("start would open a {}th accumulation group; at most {} may "
                             "be open (close one with stop=true)",
                             open_groups_.size() + 1, config_.psum_banks));
      open_groups_.push_back(out_region);
      group = open_groups_.end() - 1;
    }
  } else if (group == open_groups_.end()) {
    fail(op, fmt::format("accumulates (start=false) into '{}' {}, which has no open "
                         "accumulation group (the first matmul of a group needs start=true)",
                         memories_.name_of(out), out.describe()));
  }
  if (stop) open_groups_.erase(group);
}

void Rules::transpose(const View& out, const View& in) const {
  const char* op = "transpose";
  check_engine_operand(op, "out", Engine::kTensor, out, true);
  check_engine_operand(op, "in", Engine::kTensor, in, false);
  if (out.memory() != Memory::kPsum || in.memory() != Memory::kSbuf)
    fail(op, "TensorE transposes an SBUF tile into PSUM");
  if (!is_matmul_dtype(in.dtype()) ||
      (out.dtype() != DType::kF32 && out.dtype() != in.dtype()))
    fail(op, fmt::format("transpose of {} into {}: input must be a float type and out "
                         "fp32 or the input's dtype",
                         nki_dtype_name(in.dtype()), nki_dtype_name(out.dtype())));
  int64_t P = in.partitions();
  int64_t F = in.free_size();
  if (P > config_.pe_rows || F > config_.pe_cols)
    fail(op, fmt::format("in {} exceeds the {}x{} PE array", in.describe(), config_.pe_rows,
                         config_.pe_cols));
  if (out.partitions() != F || out.free_size() != P)
    fail(op, fmt::format("out {} must be [{}, {}]", out.describe(), F, P));
  const Region out_region = memories_.region_of(out);
  int64_t first_byte = out.offset_bytes();
  if (first_byte / config_.psum_bank_bytes != (out_region.b1 - 1) / config_.psum_bank_bytes)
    fail(op, fmt::format("out {} crosses a PSUM bank boundary", out.describe()));
  for (const Region& g : open_groups_) {
    if (g.overlaps(out_region))
      fail(op, fmt::format("out {} overlaps an open accumulation group", out.describe()));
  }
}

// ---- ScalarE.

void Rules::activation(const char* op, const View& out, const View& in, const View* reduce_out,
                       const Operand& scale, const Operand& bias) const {
  const Engine engine = Engine::kScalar;
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  check_input_shape(op, in, out);
  check_scalar_operands(op, "scale/bias operand", engine, out, {&scale, &bias});
  if (reduce_out) {
    check_engine_operand(op, "reduce_out", engine, *reduce_out, true);
    if (reduce_out->partitions() != out.partitions() || reduce_out->free_size() != 1)
      fail(op, fmt::format("reduce_out {} must be [{}, 1]", reduce_out->describe(),
                           out.partitions()));
  }
}

// ---- VectorE and GpSimd (ScalarE also copies and sets memory).

void Rules::tensor_tensor(const View& out, const View& a, AluOp alu, const View& b,
                          Engine engine) const {
  const char* op = "tensor_tensor";
  check_engine(op, engine, vector_or_gpsimd(engine));
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "a", engine, a, false);
  check_engine_operand(op, "b", engine, b, false);
  if (alu == AluOp::kBypass) fail(op, "bypass is not a binary operation");
  for (const View* v : {&a, &b}) {
    if (v->partitions() != out.partitions() || v->free_size() != out.free_size())
      fail(op, fmt::format("operand {} does not match out {} ({} x {} elements)", v->describe(),
                           out.describe(), out.partitions(), out.free_size()));
  }
}

void Rules::tensor_scalar(const View& out, const View& in, const Operand& s0, const Operand& s1,
                          Engine engine) const {
  const char* op = "tensor_scalar";
  check_engine(op, engine, vector_or_gpsimd(engine));
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  check_input_shape(op, in, out);
  check_scalar_operands(op, "scalar operand", engine, out, {&s0, &s1});
}

void Rules::tensor_reduce(const View& out, AluOp alu, const View& in, int axes,
                          Engine engine) const {
  const char* op = "tensor_reduce";
  check_engine(op, engine, vector_or_gpsimd(engine));
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  if (alu != AluOp::kAdd && alu != AluOp::kMax && alu != AluOp::kMin && alu != AluOp::kMultiply)
    fail(op, fmt::format("reduction op must be add, max, min or multiply, got {}",
                         alu_op_name(alu)));
  if (axes < 1) fail(op, fmt::format("axes must be >= 1, got {}", axes));
  const ReduceShape r = reduce_shape(in, axes);
  if (out.partitions() != in.partitions() || out.free_size() != r.outer)
    fail(op, fmt::format("out {} must be [{}, {}] (in {} reduced over its {} innermost free "
                         "dimensions)",
                         out.describe(), in.partitions(), r.outer, in.describe(), r.reduced));
}

void Rules::tensor_copy(const View& out, const View& in, Engine engine) const {
  const char* op = "tensor_copy";
  check_engine(op, engine, engine != Engine::kTensor);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  check_input_shape(op, in, out);
}

void Rules::reciprocal(const View& out, const View& in, Engine engine) const {
  const char* op = "reciprocal";
  check_engine(op, engine, vector_or_gpsimd(engine));
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  check_input_shape(op, in, out);
}

void Rules::memset(const View& out, Engine engine) const {
  const char* op = "memset";
  check_engine(op, engine, engine != Engine::kTensor);
  check_engine_operand(op, "out", engine, out, true);
}

void Rules::select(const View& out, const View& predicate, const View& on_true,
                   const View& on_false, Engine engine) const {
  const char* op = "select";
  check_engine(op, engine, vector_or_gpsimd(engine));
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "predicate", engine, predicate, false);
  check_engine_operand(op, "on_true", engine, on_true, false);
  check_engine_operand(op, "on_false", engine, on_false, false);
  for (const View* v : {&predicate, &on_true, &on_false}) {
    if (v->partitions() != out.partitions() || v->free_size() != out.free_size())
      fail(op, fmt::format("operand {} does not match out {}", v->describe(), out.describe()));
  }
}

void Rules::mxfp4_decode(const View& out, const View& codes, const View& scales,
                         Engine engine) const {
  const char* op = "mxfp4_decode";
  check_engine(op, engine, vector_or_gpsimd(engine));
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "codes", engine, codes, false);
  check_engine_operand(op, "scales", engine, scales, false);
  for (const View* v : {&out, &codes, &scales}) {
    if (v->memory() != Memory::kSbuf)
      fail(op, fmt::format("{} must be in SBUF (the decode reads and writes SBUF tiles)",
                           v->describe()));
  }
  if (codes.dtype() != DType::kU8 || scales.dtype() != DType::kU8)
    fail(op, fmt::format("codes {} and scales {} must be uint8 (packed E2M1 codes, E8M0 scales)",
                         codes.describe(), scales.describe()));
  if (!is_float(out.dtype()))
    fail(op, fmt::format("out {} must be a float type", out.describe()));
  const int64_t values = out.free_size();
  if (codes.partitions() != out.partitions() || scales.partitions() != out.partitions())
    fail(op, fmt::format("codes {}, scales {} and out {} must cover the same partitions",
                         codes.describe(), scales.describe(), out.describe()));
  if (codes.free_size() * 2 != values)
    fail(op, fmt::format("codes {} must hold one byte per two values of out {} ({} bytes)",
                         codes.describe(), out.describe(), values / 2));
  // Each scale covers a run of consecutive values of whole bytes (32 in MXFP4's blocks).
  const int64_t group = values / scales.free_size();
  if (group * scales.free_size() != values || group % 2 != 0)
    fail(op, fmt::format("scales {} must split the {} values of out {} into equal runs of an "
                         "even length",
                         scales.describe(), values, out.describe()));
}

void Rules::iota(const View& out, const std::vector<float>& free_steps) const {
  const char* op = "iota";
  check_engine_operand(op, "out", Engine::kGpSimd, out, true);
  check_free_steps(op, out, free_steps);
}

void Rules::affine_select(const View& out, const View& in, const std::vector<float>& free_steps,
                          AluOp cmp) const {
  const char* op = "affine_select";
  check_engine_operand(op, "out", Engine::kGpSimd, out, true);
  check_engine_operand(op, "in", Engine::kGpSimd, in, false);
  if (!is_comparison(cmp))
    fail(op, fmt::format("cmp must be a comparison, got {}", alu_op_name(cmp)));
  check_input_shape(op, in, out);
  check_free_steps(op, out, free_steps);
}

}  // namespace switchyard::neuron
