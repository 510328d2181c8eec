// What the tests of the trn*-sim tile programs share: the two precisions they check a program in
// (fp32 tensors with fp32 compute, bf16 tensors with bf16 compute) with the error each allows, and
// HBM tensors of a simulated core filled from the host and read back as doubles (the values the
// CPU kernel templates then compute from, in double).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "neuron/neuron_core.h"

namespace switchyard::backend::neuron {

using ::switchyard::neuron::NeuronCore;
using ::switchyard::neuron::View;

struct Mode {
  DType act, compute;
  double tol;
  const char* name;
};
inline constexpr Mode kFp32{DType::kF32, DType::kF32, 1e-5, "fp32"};
inline constexpr Mode kBf16{DType::kBF16, DType::kBF16, 2e-2, "bf16"};

// An HBM tensor of `shape` holding `values` (rounded to `dtype`).
inline View upload(NeuronCore& core, const std::vector<int64_t>& shape, DType dtype,
                   const std::vector<float>& values, const std::string& name) {
  View v = core.hbm_alloc(shape, dtype, name);
  core.write(v, values);
  return v;
}

inline std::vector<double> read(const NeuronCore& core, const View& v) {
  const std::vector<float> f = core.read(v);
  return std::vector<double>(f.begin(), f.end());
}

}  // namespace switchyard::backend::neuron
