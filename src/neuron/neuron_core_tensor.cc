// NeuronCore: TensorE instructions (matmul with PSUM accumulation groups, transpose).
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "neuron/cost_model.h"
#include "neuron/matmul_kernel.h"
#include "neuron/neuron_core.h"

namespace switchyard::neuron {

namespace {

bool is_matmul_dtype(DType d) { return d != DType::kI32; }

}  // namespace

void NeuronCore::matmul(const View& out, const View& stationary, const View& moving, bool start,
                        bool stop) {
  const char* op = "matmul";
  check_engine_operand(op, "out", Engine::kTensor, out, true);
  check_engine_operand(op, "stationary", Engine::kTensor, stationary, false);
  check_engine_operand(op, "moving", Engine::kTensor, moving, false);
  if (out.memory() != Memory::kPsum || out.dtype() != DType::kF32)
    rule_error(op, fmt::format("out {} must be an fp32 PSUM tile", out.describe()));
  if (stationary.memory() != Memory::kSbuf || moving.memory() != Memory::kSbuf)
    rule_error(op, "stationary and moving operands must be in SBUF");
  if (!is_matmul_dtype(stationary.dtype()) || !is_matmul_dtype(moving.dtype()))
    rule_error(op, "matmul inputs must be fp8 (e4m3/e5m2), bf16, fp16 or fp32, not int32");
  bool both_fp8 = is_fp8(stationary.dtype()) && is_fp8(moving.dtype());
  if (stationary.dtype() != moving.dtype() && !both_fp8)
    rule_error(op, fmt::format("stationary ({}) and moving ({}) must have the same dtype",
                               nki_dtype_name(stationary.dtype()), nki_dtype_name(moving.dtype())));
  int64_t K = stationary.partitions();
  int64_t M = stationary.free_size();
  int64_t N = moving.free_size();
  if (moving.partitions() != K)
    rule_error(op, fmt::format("stationary has K = {} partitions but moving has {}", K,
                               moving.partitions()));
  if (K > config_.pe_rows) rule_error(op, fmt::format("K = {} exceeds {}", K, config_.pe_rows));
  if (M > config_.pe_cols)
    rule_error(op, fmt::format("stationary free size M = {} exceeds {}", M, config_.pe_cols));
  int64_t max_n = config_.psum_bank_bytes / 4;
  if (N > max_n)
    rule_error(op,
               fmt::format("moving free size N = {} exceeds {} (one PSUM bank of fp32)", N, max_n));
  if (out.partitions() != M || out.free_size() != N)
    rule_error(op, fmt::format("out {} must be [M = {}, N = {}]", out.describe(), M, N));
  int64_t first_byte = out.offset_bytes();
  int64_t last_byte = region_of(out).b1 - 1;
  if (first_byte / config_.psum_bank_bytes != last_byte / config_.psum_bank_bytes)
    rule_error(op, fmt::format("out {} crosses a PSUM bank boundary (bytes {}..{} of each "
                               "partition; banks are {} bytes)",
                               out.describe(), first_byte, last_byte, config_.psum_bank_bytes));

  // Accumulation groups.
  Region out_region = region_of(out);
  auto same = [&](const Region& g) {
    return g.allocation == out_region.allocation && g.contains(out_region) &&
           out_region.contains(g);
  };
  auto group = std::find_if(open_groups_.begin(), open_groups_.end(), same);
  for (const Region& g : open_groups_) {
    if (!same(g) && g.overlaps(out_region))
      rule_error(
          op, fmt::format("out {} overlaps a different open accumulation group", out.describe()));
  }
  if (start) {
    if (group == open_groups_.end()) {
      if (static_cast<int>(open_groups_.size()) >= config_.psum_banks)
        rule_error(op, fmt::format("start would open a {}th accumulation group; at most {} may "
                                   "be open (close one with stop=true)",
                                   open_groups_.size() + 1, config_.psum_banks));
      open_groups_.push_back(out_region);
      group = open_groups_.end() - 1;
    }
  } else if (group == open_groups_.end()) {
    rule_error(op, fmt::format("accumulates (start=false) into '{}' {}, which has no open "
                               "accumulation group (the first matmul of a group needs start=true)",
                               allocation_name(out), out.describe()));
  }

  // Functional: the product in fp32, accumulated into PSUM. bf16 and fp32 operands whose rows
  // are contiguous are read where they lie in SBUF; others through fp32 copies.
  const int Mi = static_cast<int>(M), Ni = static_cast<int>(N), Ki = static_cast<int>(K);
  auto multiply = [&](float* c, int64_t ldc, bool overwrite) {
    const bool in_place = stationary.rows_contiguous() && moving.rows_contiguous();
    if (in_place && stationary.dtype() == DType::kBF16) {
      const int64_t ld = sbuf_host_stride() / 2;
      matmul_accumulate_bf16(c, ldc, reinterpret_cast<const uint16_t*>(element_base(stationary, 0)),
                             ld, reinterpret_cast<const uint16_t*>(element_base(moving, 0)), ld,
                             Mi, Ni, Ki, overwrite);
    } else if (in_place && stationary.dtype() == DType::kF32) {
      const int64_t ld = sbuf_host_stride() / 4;
      matmul_accumulate(c, ldc, reinterpret_cast<const float*>(element_base(stationary, 0)), ld,
                        reinterpret_cast<const float*>(element_base(moving, 0)), ld, Mi, Ni, Ki,
                        overwrite);
    } else {
      std::span<float> s = scratch(0, K * M);
      std::span<float> v = scratch(1, K * N);
      load(stationary, s.data());
      load(moving, v.data());
      matmul_accumulate(c, ldc, s.data(), M, v.data(), N, Mi, Ni, Ki, overwrite);
    }
  };
  if (out.rows_contiguous()) {
    float* c = reinterpret_cast<float*>(element_base(out, 0));
    multiply(c, psum_host_stride() / 4, /*overwrite=*/start);
  } else {
    std::span<float> c = scratch(2, M * N);
    std::fill(c.begin(), c.end(), 0.0f);
    if (!start) load(out, c.data());
    multiply(c.data(), N, /*overwrite=*/false);
    store(out, c.data());
  }
  if (stop) open_groups_.erase(group);

  // Timing: MultiplyMoving max(N, 64) cycles (4x for fp32, half for fp8 on v3); LoadStationary
  // a quarter of a multiply of the stationary's size, overlapping the previous multiply.
  DType dtype = moving.dtype();
  auto multiply_cycles = [&](int64_t n) {
    double cycles = static_cast<double>(std::max(n, cost::kMatmulMinCycles));
    if (dtype == DType::kF32) cycles *= cost::kMatmulFp32Factor;
    if (both_fp8 && config_.fp8_double_rate) cycles /= cost::kMatmulFp8V3Divisor;
    return cycles;
  };
  double ghz = config_.tensor_ghz;
  double load_ns = multiply_cycles(M) / cost::kLoadStationarySpeedup / ghz;
  double multiply_ns = multiply_cycles(N) / ghz;

  Accesses stationary_access;
  stationary_access.read(region_of(stationary));
  double load_start = std::max(
      {deps_.ready_time(stationary_access), stationary_loader_free_, last_multiply_start_});
  double load_end = load_start + load_ns;
  Accesses acc;
  acc.read(region_of(stationary));
  acc.read(region_of(moving));
  if (!start) acc.read(out_region);
  acc.write(out_region);
  int track = track_of(Engine::kTensor);
  double previous_end = track_free_[track];
  double multiply_start = std::max({load_end, previous_end, deps_.ready_time(acc)});
  double multiply_end = multiply_start + multiply_ns;
  // Load time not hidden behind the previous multiply counts as TensorE busy time.
  double exposed = std::max(0.0, load_end - std::max(load_start, previous_end));
  stationary_loader_free_ = load_end;
  last_multiply_start_ = multiply_start;
  track_free_[track] = multiply_end;
  track_busy_[track] += multiply_ns + exposed;
  track_count_[track] += 1;
  deps_.commit(acc, multiply_end, multiply_end);
  total_ns_ = std::max(total_ns_, multiply_end);
  matmul_flops_ += 2.0 * static_cast<double>(K * M * N);
  trace("load_stationary", kComputeEngines + config_.dma_queues, load_start, load_end);
  trace(op, track, multiply_start, multiply_end);
  last_timing_ = InstructionTiming{op, multiply_start, multiply_end, multiply_end};
  ++instruction_count_;
}

void NeuronCore::transpose(const View& out, const View& in) {
  const char* op = "transpose";
  check_engine_operand(op, "out", Engine::kTensor, out, true);
  check_engine_operand(op, "in", Engine::kTensor, in, false);
  if (out.memory() != Memory::kPsum || in.memory() != Memory::kSbuf)
    rule_error(op, "TensorE transposes an SBUF tile into PSUM");
  if (in.dtype() == DType::kI32 || (out.dtype() != DType::kF32 && out.dtype() != in.dtype()))
    rule_error(op, fmt::format("transpose of {} into {}: input must be a float type and out "
                               "fp32 or the input's dtype",
                               nki_dtype_name(in.dtype()), nki_dtype_name(out.dtype())));
  int64_t P = in.partitions();
  int64_t F = in.free_size();
  if (P > config_.pe_rows || F > config_.pe_cols)
    rule_error(op, fmt::format("in {} exceeds the {}x{} PE array", in.describe(), config_.pe_rows,
                               config_.pe_cols));
  if (out.partitions() != F || out.free_size() != P)
    rule_error(op, fmt::format("out {} must be [{}, {}]", out.describe(), F, P));
  Region out_region = region_of(out);
  int64_t first_byte = out.offset_bytes();
  if (first_byte / config_.psum_bank_bytes != (out_region.b1 - 1) / config_.psum_bank_bytes)
    rule_error(op, fmt::format("out {} crosses a PSUM bank boundary", out.describe()));
  for (const Region& g : open_groups_) {
    if (g.overlaps(out_region))
      rule_error(op, fmt::format("out {} overlaps an open accumulation group", out.describe()));
  }
  std::span<float> a = scratch(0, P * F);
  std::span<float> t = scratch(1, P * F);
  load(in, a.data());
  for (int64_t p = 0; p < P; ++p)
    for (int64_t f = 0; f < F; ++f) t[f * P + p] = a[p * F + f];
  store(out, t.data());

  // Timing: a matmul with the input as stationary and an identity [P, P] as moving.
  double cycles = static_cast<double>(std::max(P, cost::kMatmulMinCycles));
  if (in.dtype() == DType::kF32) cycles *= cost::kMatmulFp32Factor;
  double load_cycles = static_cast<double>(std::max(F, cost::kMatmulMinCycles)) *
                       (in.dtype() == DType::kF32 ? cost::kMatmulFp32Factor : 1) /
                       cost::kLoadStationarySpeedup;
  Accesses acc;
  acc.read(region_of(in));
  acc.write(out_region);
  double ghz = config_.tensor_ghz;
  int track = track_of(Engine::kTensor);
  double load_start =
      std::max({deps_.ready_time(acc), stationary_loader_free_, last_multiply_start_});
  double load_end = load_start + load_cycles / ghz;
  double previous_end = track_free_[track];
  double multiply_start = std::max(load_end, previous_end);
  double multiply_end = multiply_start + cycles / ghz;
  stationary_loader_free_ = load_end;
  last_multiply_start_ = multiply_start;
  track_free_[track] = multiply_end;
  track_busy_[track] += cycles / ghz + std::max(0.0, load_end - std::max(load_start, previous_end));
  track_count_[track] += 1;
  deps_.commit(acc, multiply_end, multiply_end);
  total_ns_ = std::max(total_ns_, multiply_end);
  trace("load_stationary", kComputeEngines + config_.dma_queues, load_start, load_end);
  trace(op, track, multiply_start, multiply_end);
  last_timing_ = InstructionTiming{op, multiply_start, multiply_end, multiply_end};
  ++instruction_count_;
}

}  // namespace switchyard::neuron
