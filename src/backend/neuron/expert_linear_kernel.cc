#include "backend/neuron/expert_linear_kernel.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/linear_kernel.h"
#include "core/error.h"
#include "neuron/instruction_costs.h"

namespace switchyard::backend::neuron {

namespace {

namespace cost = ::switchyard::neuron::cost;

constexpr int64_t kBlockValues = 32;                // values sharing one E8M0 scale
constexpr int64_t kBlockBytes = kBlockValues / 2;  // their 4-bit codes
constexpr int64_t kTileFeatures = 128;  // output features per matmul (stationary columns)
constexpr int64_t kMaxPassRows = 512;   // rows per pass (moving columns: one PSUM bank of fp32)
// Feature tiles whose codes load together: 4 x 128 features x 16 bytes per block, loads well over
// the 32 KiB a transfer needs for full speed (the scales: 512 bytes per lane).
constexpr int64_t kStepTiles = 4;
// SBUF per partition for one pass's rows (inputs of every lane tile); two sets, so that the next
// pass's rows load while this pass runs.
constexpr int64_t kRowSetBytes = 32 * 1024;
// Weight steps whose codes are requested ahead of the decode: the decode is many times slower
// than the load, so a few steps cover the DMA latency and the turn from one expert to the next.
constexpr int64_t kPrefetchSteps = 3;
// Decoded tiles: one that TensorE reads while both decoding engines fill one each.
constexpr int64_t kDecodedSlots = 3;
constexpr int64_t kStagedSlots = 8;  // drained output tiles on their way to HBM
constexpr int kPsumSlots = 8;        // one bank each; a step's tiles use at most half of them
constexpr double kStoreQueueShare = 0.25;
constexpr int kMaxLoadPieces = 8;

// ---- shape checks

// A uint8 HBM matrix [rows, cols] with contiguous rows (MXFP4 codes or scales).
void require_byte_matrix(const char* kernel, const char* name, const View& v, int64_t rows,
                         int64_t cols) {
  require(v.memory() == Memory::kHbm && v.dtype() == DType::kU8 && v.free_dims() == 1 &&
              v.free_dim(0).stride == 1 && v.partitions() == rows && v.free_size() == cols,
          "{}: {} must be an HBM uint8 tensor [{}, {}] with contiguous rows, got {}", kernel, name,
          rows, cols, v.describe());
}

void require_weights(const char* kernel, const ExpertWeights& w) {
  const int64_t E = w.experts, OC = w.out_features, C = w.in_features;
  require(E >= 1 && OC >= 1 && C >= 1,
          "{}: the weights need experts, outputs and inputs, got [{}, {}, {}]", kernel, E, OC, C);
  if (!w.mxfp4()) {
    require_dense_matrix(kernel, "weight", w.dense, E * OC, C);
    return;
  }
  require(C % kBlockValues == 0, "{}: MXFP4 weights need inputs in whole blocks of {}, got C = {}",
          kernel, kBlockValues, C);
  require_byte_matrix(kernel, "weight codes", w.codes, E * OC, C / 2);
  require_byte_matrix(kernel, "weight scales", w.scales, E * OC, C / kBlockValues);
}

// The checks forward and backward share: the compute dtype, the weights and inp [A, C]. Returns A.
int64_t require_common_operands(const char* kernel, DType compute, const ExpertWeights& weight,
                                const View& inp) {
  require_compute(kernel, compute);
  require_weights(kernel, weight);
  require(inp.memory() == Memory::kHbm && inp.free_dims() == 1,
          "{}: inp must be a 2-D HBM tensor [A, C], got {}", kernel, inp.describe());
  require_dense_matrix(kernel, "inp", inp, inp.partitions(), weight.in_features);
  return inp.partitions();
}

void require_offsets(const char* kernel, std::span<const int64_t> offsets, int64_t experts,
                     int64_t rows) {
  const std::string problem = offsets_problem(offsets, experts, rows);
  require(problem.empty(), "{}: offsets {}", kernel, problem);
}

// Calls fn(expert, first_row, rows) for every expert that has rows.
template <typename Fn>
void for_each_expert(std::span<const int64_t> offsets, Fn&& fn) {
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    const int64_t rows = offsets[e + 1] - offsets[e];
    if (rows > 0) fn(static_cast<int64_t>(e), offsets[e], rows);
  }
}

// ---- the MXFP4 program (see the header)

// Runs of a block per partition: 1, 2 or 4 (of 32, 16 or 8 values), whichever needs the fewest
// decoded values per partition and matmuls per feature tile (partition tiles x values per run),
// the fewer runs on a tie (each run has its own copy of the block's scale byte).
int64_t choose_runs_per_block(int64_t blocks) {
  const auto work = [&](int64_t runs) {
    return ceil_div(blocks * runs, kPartitions) * (kBlockValues / runs);
  };
  int64_t best = 1;
  for (int64_t runs : {2, 4}) {
    if (work(runs) < work(best)) best = runs;
  }
  return best;
}

class Mxfp4Program {
 public:
  Mxfp4Program(NeuronCore& core, const View& out, const View& inp, const ExpertWeights& weight,
               const View& bias, std::span<const int64_t> offsets, DType compute)
      : core_(core),
        pool_(core),
        queues_(core, kStoreQueueShare),
        out_(out),
        inp_(inp),
        w_(weight),
        bias_(bias),
        compute_(compute),
        blocks_(weight.in_features / kBlockValues),
        runs_(choose_runs_per_block(blocks_)),
        run_(kBlockValues / runs_),
        lanes_(blocks_ * runs_),
        lane_tiles_(ceil_div(lanes_, kPartitions)) {
    plan(offsets);
  }

  void run() {
    if (steps_.empty()) return;
    allocate();
    load_pass_inputs(0);
    for (int64_t s = 0; s < std::min<int64_t>(kPrefetchSteps, steps()); ++s) load_step(s);
    int64_t group = -1;  // output tiles accumulating together: a step's at its first lane tile
    for (int64_t s = 0; s < steps(); ++s) {
      const Step& step = steps_[s];
      if (step.f0 == 0 && step.kt == 0 && step.pass + 1 < passes()) load_pass_inputs(step.pass + 1);
      if (s + kPrefetchSteps < steps()) load_step(s + kPrefetchSteps);
      if (step.kt == 0) ++group;
      for (int64_t t = 0; t < ceil_div(step.features, kTileFeatures); ++t) {
        const View decoded = decode(s, t);
        const View acc = multiply(step, t, decoded, group);
        if (step.kt == lane_tiles_ - 1) drain(step, t, acc);
      }
    }
  }

 private:
  struct Pass {
    int64_t expert, row0, rows;  // rows [row0, row0 + rows) of inp and out
  };
  struct Step {
    int64_t pass, f0, features, kt;  // features [f0, f0 + features) over lane tile kt
  };

  int64_t passes() const { return static_cast<int64_t>(passes_.size()); }
  int64_t steps() const { return static_cast<int64_t>(steps_.size()); }
  int64_t ring() const { return kPrefetchSteps + 2; }  // two spare: a refill never waits on TensorE
  int64_t tile_lanes(int64_t kt) const { return std::min(kPartitions, lanes_ - kt * kPartitions); }
  int64_t step_features() const { return kStepTiles * kTileFeatures; }

  // Lane (contraction partition) l = h * blocks + b holds run h of block b: values
  // [h * run_, (h + 1) * run_) of the block, and the block's scale. Calls
  // fn(partition, count, h, b) for each stretch of lane tile kt with one h.
  template <typename Fn>
  void for_each_stretch(int64_t kt, Fn&& fn) const {
    const int64_t first = kt * kPartitions, end = first + tile_lanes(kt);
    for (int64_t h = first / blocks_; h * blocks_ < end; ++h) {
      const int64_t from = std::max(first, h * blocks_), to = std::min(end, (h + 1) * blocks_);
      fn(from - first, to - from, h, from - h * blocks_);
    }
  }

  // Passes of up to row_cap_ rows per expert, and for each the weight steps: groups of feature
  // tiles, lane tile by lane tile (so each tile's accumulation group closes at the last one).
  void plan(std::span<const int64_t> offsets) {
    row_cap_ = std::clamp<int64_t>(kRowSetBytes / (lane_tiles_ * run_ * dtype_bytes(compute_)), 1,
                                   kMaxPassRows);
    for_each_expert(offsets, [&](int64_t e, int64_t first, int64_t rows) {
      for (int64_t r = 0; r < rows; r += row_cap_)
        passes_.push_back({e, first + r, std::min(row_cap_, rows - r)});
    });
    const int64_t OC = w_.out_features;
    for (int64_t p = 0; p < passes(); ++p) {
      for (int64_t f0 = 0; f0 < OC; f0 += step_features()) {
        for (int64_t kt = 0; kt < lane_tiles_; ++kt)
          steps_.push_back({p, f0, std::min(step_features(), OC - f0), kt});
      }
    }
  }

  void allocate() {
    const int64_t P = kPartitions;
    for (View& set : row_sets_)
      set = pool_.sbuf(P, {lane_tiles_ * row_cap_ * run_}, compute_, "expert.rows");
    if (present(bias_)) {
      for (View& set : bias_sets_)
        set = pool_.sbuf(P, {ceil_div(w_.out_features, kTileFeatures)}, DType::kF32, "expert.bias");
    }
    for (int64_t i = 0; i < ring(); ++i) {
      codes_.push_back(pool_.sbuf(P, {step_features(), run_ / 2}, DType::kU8, "expert.codes"));
      scales_.push_back(pool_.sbuf(P, {step_features()}, DType::kU8, "expert.scales"));
    }
    for (int64_t i = 0; i < kDecodedSlots; ++i)
      decoded_.push_back(pool_.sbuf(P, {kTileFeatures, run_}, compute_, "expert.weights"));
    for (int64_t i = 0; i < kStagedSlots; ++i)
      staged_.push_back(pool_.sbuf(P, {row_cap_}, out_.dtype(), "expert.out"));
    for (int i = 0; i < kPsumSlots; ++i)
      psum_.push_back(pool_.psum(P, {kPsumBankFloats}, DType::kF32, "expert.acc"));
  }

  // The pass's inputs in lane order: inp[n, 32 b + h * run_ + q] at partition l (lane h * blocks
  // + b) of lane tile l / 128, column (n, q) of its part of the row set; and its expert's bias as
  // per-partition columns.
  void load_pass_inputs(int64_t p) {
    const Pass& pass = passes_[p];
    const int64_t row_stride = inp_.partition_stride();
    for (int64_t kt = 0; kt < lane_tiles_; ++kt) {
      for_each_stretch(kt, [&](int64_t partition, int64_t count, int64_t h, int64_t b) {
        const View src = inp_.pattern(pass.row0 * row_stride + b * kBlockValues + h * run_,
                                      Dim{count, kBlockValues},
                                      {Dim{pass.rows, row_stride}, Dim{run_, 1}});
        split_copy(core_, rows_view(p, kt).rows(partition, count).flatten(), src, kMaxLoadPieces,
                   [&] { return queues_.load(); });
      });
    }
    if (present(bias_)) {
      copy_row_statistics(core_, bias_.rows(pass.expert, 1), bias_sets_[p % 2], w_.out_features,
                          /*to_hbm=*/false, queues_.load());
    }
  }

  // [128, rows, run_] inputs of pass p for lane tile kt.
  View rows_view(int64_t p, int64_t kt) const {
    const int64_t width = passes_[p].rows * run_;
    return row_sets_[p % 2].cols(kt * row_cap_ * run_, width).split(0, run_);
  }

  // Codes and scales of step s: per lane and feature, the run's code bytes and the block's scale
  // byte, read from HBM as they lie there.
  void load_step(int64_t s) {
    const Step& step = steps_[s];
    const int64_t row = passes_[step.pass].expert * w_.out_features + step.f0;
    const int64_t code_stride = w_.codes.partition_stride();
    const int64_t scale_stride = w_.scales.partition_stride();
    auto load = [&] { return queues_.load(); };
    for_each_stretch(step.kt, [&](int64_t partition, int64_t count, int64_t h, int64_t b) {
      const View codes = w_.codes.pattern(row * code_stride + b * kBlockBytes + h * run_ / 2,
                                          Dim{count, kBlockBytes},
                                          {Dim{step.features, code_stride}, Dim{run_ / 2, 1}});
      const View scales = w_.scales.pattern(row * scale_stride + b, Dim{count, 1},
                                            {Dim{step.features, scale_stride}});
      split_copy(core_, codes_[s % ring()].rows(partition, count).slice(0, 0, step.features).flatten(),
                 codes, kMaxLoadPieces, load);
      split_copy(core_, scales_[s % ring()].rows(partition, count).cols(0, step.features), scales,
                 kMaxLoadPieces, load);
    });
  }

  // Decodes feature tile t of step s into the next decoded slot, on the engine that would finish
  // it first: [lanes, features, run_] values in the compute dtype.
  View decode(int64_t s, int64_t t) {
    const Step& step = steps_[s];
    const int64_t lanes = tile_lanes(step.kt);
    const int64_t fs = std::min(kTileFeatures, step.features - t * kTileFeatures);
    const View out = decoded_[decodes_++ % kDecodedSlots].rows(0, lanes).slice(0, 0, fs);
    const View codes = codes_[s % ring()].rows(0, lanes).slice(0, t * kTileFeatures, fs);
    const View scales = scales_[s % ring()].rows(0, lanes).cols(t * kTileFeatures, fs);
    const bool vector = vector_busy_ns_ + decode_ns(out, codes, scales, Engine::kVector) <=
                        gpsimd_busy_ns_ + decode_ns(out, codes, scales, Engine::kGpSimd);
    const Engine engine = vector ? Engine::kVector : Engine::kGpSimd;
    (vector ? vector_busy_ns_ : gpsimd_busy_ns_) += decode_ns(out, codes, scales, engine);
    core_.mxfp4_decode(out, codes, scales, engine);
    return out;
  }

  double decode_ns(const View& out, const View& codes, const View& scales, Engine engine) const {
    const auto& config = core_.config();
    return cost::mxfp4_decode_cycles(config, out, codes, scales, engine) /
           cost::engine_ghz(config, engine);
  }

  // out^T [features, rows] of feature tile t += the tile's weights times the pass's inputs, one
  // matmul per value position of the runs; the group opens at the first lane tile and closes at
  // the last.
  View multiply(const Step& step, int64_t t, const View& decoded, int64_t group) {
    const int64_t fs = decoded.free_dim(0).size;
    const int64_t rows = passes_[step.pass].rows;
    const View acc = psum_[(group * kStepTiles + t) % kPsumSlots].rows(0, fs).cols(0, rows);
    const View inputs = rows_view(step.pass, step.kt).rows(0, decoded.partitions());
    const bool first = step.kt == 0, last = step.kt == lane_tiles_ - 1;
    for (int64_t q = 0; q < run_; ++q) {
      core_.matmul(acc, decoded.slice(1, q, 1), inputs.slice(1, q, 1), first && q == 0,
                   last && q == run_ - 1);
    }
    return acc;
  }

  // PSUM -> SBUF on ScalarE (adding the bias column), then a transposing store into out's rows.
  void drain(const Step& step, int64_t t, const View& acc) {
    const Pass& pass = passes_[step.pass];
    const int64_t fs = acc.partitions();
    const int64_t f = step.f0 + t * kTileFeatures;
    const View staged = staged_[drains_++ % kStagedSlots].rows(0, fs).cols(0, pass.rows);
    const Operand bias =
        present(bias_) ? Operand(bias_sets_[step.pass % 2].rows(0, fs).cols(f / kTileFeatures, 1))
                       : Operand(0.0f);
    core_.activation(staged, Activation::kIdentity, acc, 1.0f, bias);
    core_.dma_copy(out_.rows(pass.row0, pass.rows).cols(f, fs).transposed(), staged,
                   queues_.store());
  }

  NeuronCore& core_;
  TilePool pool_;
  DmaQueues queues_;
  const View out_, inp_;
  const ExpertWeights w_;
  const View bias_;
  const DType compute_;
  const int64_t blocks_;      // C / 32
  const int64_t runs_;        // runs per block, each on a lane of its own
  const int64_t run_;         // values per run (32 / runs_)
  const int64_t lanes_;       // blocks_ * runs_ contraction partitions
  const int64_t lane_tiles_;  // tiles of up to 128 lanes
  int64_t row_cap_ = 0;
  std::vector<Pass> passes_;
  std::vector<Step> steps_;

  std::array<View, 2> row_sets_, bias_sets_;
  std::vector<View> codes_, scales_, decoded_, staged_, psum_;
  int64_t decodes_ = 0, drains_ = 0;
  // Decode time handed to each engine so far, to give the next tile to the one free first.
  double vector_busy_ns_ = 0, gpsimd_busy_ns_ = 0;
};

}  // namespace

std::string offsets_problem(std::span<const int64_t> offsets, int64_t experts, int64_t rows) {
  if (static_cast<int64_t>(offsets.size()) != experts + 1)
    return fmt::format("has {} values, expected E + 1 = {}", offsets.size(), experts + 1);
  if (offsets[0] != 0) return fmt::format("start at {}, expected offsets[0] = 0", offsets[0]);
  for (int64_t e = 0; e < experts; ++e) {
    if (offsets[e + 1] < offsets[e])
      return fmt::format("decrease: offsets[{}] = {} is below offsets[{}] = {}", e + 1,
                         offsets[e + 1], e, offsets[e]);
  }
  if (offsets[experts] != rows)
    return fmt::format("end at offsets[{}] = {}, expected the row count {}", experts,
                       offsets[experts], rows);
  return "";
}

void expert_linear_forward(NeuronCore& core, const View& out, const View& inp,
                           const ExpertWeights& weight, const View& bias,
                           std::span<const int64_t> offsets, DType compute) {
  const char* kernel = "expert_linear_forward";
  const int64_t A = require_common_operands(kernel, compute, weight, inp);
  const int64_t E = weight.experts, OC = weight.out_features;
  require_dense_matrix(kernel, "out", out, A, OC);
  if (present(bias)) require_dense_matrix(kernel, "bias", bias, E, OC);
  require_offsets(kernel, offsets, E, A);

  if (weight.mxfp4()) {
    KernelScope scope(core, "expert_linear_mxfp4");
    Mxfp4Program(core, out, inp, weight, bias, offsets, compute).run();
    return;
  }
  for_each_expert(offsets, [&](int64_t e, int64_t first, int64_t rows) {
    linear_forward(core, out.rows(first, rows), inp.rows(first, rows),
                   weight.dense.rows(e * OC, OC), present(bias) ? bias.rows(e, 1) : View(),
                   compute);
  });
}

void expert_linear_backward(NeuronCore& core, const View& dinp, const View& dweight,
                            const View& dbias, const View& dout, const View& inp,
                            const ExpertWeights& weight, std::span<const int64_t> offsets,
                            DType compute) {
  const char* kernel = "expert_linear_backward";
  require(!weight.mxfp4(),
          "{}: MXFP4 expert weights are frozen (inference only): they have no backward pass",
          kernel);
  const int64_t A = require_common_operands(kernel, compute, weight, inp);
  const int64_t E = weight.experts, OC = weight.out_features, C = weight.in_features;
  require_dense_matrix(kernel, "dout", dout, A, OC);
  require_dense_matrix(kernel, "dweight", dweight, E * OC, C);
  if (present(dinp)) require_dense_matrix(kernel, "dinp", dinp, A, C);
  if (present(dbias)) require_dense_matrix(kernel, "dbias", dbias, E, OC);
  require_offsets(kernel, offsets, E, A);

  for_each_expert(offsets, [&](int64_t e, int64_t first, int64_t rows) {
    linear_backward(core, present(dinp) ? dinp.rows(first, rows) : View(),
                    dweight.rows(e * OC, OC), present(dbias) ? dbias.rows(e, 1) : View(),
                    dout.rows(first, rows), inp.rows(first, rows), weight.dense.rows(e * OC, OC),
                    compute);
  });
}

}  // namespace switchyard::backend::neuron
