// Pieces the mixture-of-experts routing tile programs share (top-k routing and its backward pass,
// grouping by expert, the router's load statistics): row tiles, an iota of expert indices, and
// one-hot tiles of each row's chosen experts.
//
// Routing works on short rows (E <= kMaxExperts logits and k choices per row), so these programs
// keep their tiles in fp32 whatever the activations' dtype: the DMA widens bf16 logits exactly,
// compares and counts are exact, and a few instructions over E values per row cost little.
// Expert ids, counts and assignment numbers pass through fp32 on the engines, exact below 2^24.
//
// None of these programs lets a value decide what it issues: the instruction stream depends on
// the shapes (N, k, E) only, so timing-only mode (neuron/execution_mode.h) times exactly what a
// functional run issues, whatever the (unspecified) ids in memory.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// Experts a routing tile program takes: a row tile's per-expert counts, [rows, E] fp32, fill at
// most one PSUM bank.
inline constexpr int64_t kMaxExperts = kPsumBankFloats;
// Assignments (N * k) the programs number on the engines: exact in fp32.
inline constexpr int64_t kMaxAssignments = int64_t{1} << 24;
// Cells (k * E) of a one-hot tile of a row's choices: 16 KiB of fp32 per partition, so that a
// program's few one-hot tiles stay small beside its other tiles.
inline constexpr int64_t kMaxOneHotCells = 4096;

// N rows cut into tiles of up to `per_tile` rows (128 unless a program stacks several rows' worth
// of partitions per row).
struct RowTiles {
  int64_t N = 0;
  int64_t per_tile = kPartitions;
  int64_t count() const { return ceil_div(N, per_tile); }
  int64_t first(int64_t t) const { return t * per_tile; }
  int64_t rows(int64_t t) const { return std::min(per_tile, N - first(t)); }
  int64_t partitions() const { return std::min(N, per_tile); }
};

// `view` must be HBM rows [rows, cols] packed back to back (the dense [rows, cols] tensor the
// backend presents), int32 when `ids`, else fp32 or bf16.
void require_packed(const char* kernel, const char* name, const View& view, int64_t rows,
                    int64_t cols, bool ids);

// out[p, e] = e: a [P, E] fp32 tile of expert indices.
void expert_iota(NeuronCore& core, const View& out);

enum class OneHotLayout {
  kExpertMajor,  // out [R, E, k]: reducing the innermost (k) axis counts a row's choices of e
  kChoiceMajor,  // out [R, k, E]: reducing the innermost (E) axis against a per-expert row picks
                 // that row's value at each choice
};

// out[n, e, j] (or [n, j, e]) = 1 if choices[n, j] == e, else 0: one instruction comparing the
// expert iota `experts` [R, E] with the choices [R, k] (int32 or fp32), both broadcast.
void one_hot(NeuronCore& core, const View& out, const View& experts, const View& choices,
             OneHotLayout layout, Engine engine = Engine::kVector);

}  // namespace switchyard::backend::neuron
