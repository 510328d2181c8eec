// HBM tensors of random values on a simulated NeuronCore, and their stored values in double: what
// the kernel tests compare against the CPU kernels run in double on the same rounded inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "neuron/neuron_core.h"

namespace switchyard::neuron {

using Host = std::vector<double>;

// HBM tensor of `shape` filled with normal(shift, scale) values (rounded to `dtype` on the way).
inline View random_tensor(NeuronCore& core, const std::vector<int64_t>& shape, DType dtype,
                          const std::string& name, Rng& rng, float scale = 1.0f,
                          float shift = 0.0f) {
  View v = core.hbm_alloc(shape, dtype, name);
  std::vector<float> values(static_cast<size_t>(v.elements()));
  for (float& x : values) x = shift + scale * rng.normal();
  core.write(v, values);
  return v;
}

// A tensor's stored values (after rounding to its dtype), in double.
inline Host read(const NeuronCore& core, const View& v) {
  std::vector<float> f = core.read(v);
  return Host(f.begin(), f.end());
}

}  // namespace switchyard::neuron
