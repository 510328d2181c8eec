// Conveniences for writing kernels: name the current kernel for a scope, and release every tile
// a kernel allocated when it returns (including when it throws).
#pragma once

#include <string>
#include <vector>

#include "neuron/neuron_core.h"

namespace switchyard::neuron {

// Sets the kernel name for the lifetime of the scope, then restores the previous one.
class KernelScope {
 public:
  KernelScope(NeuronCore& core, std::string name) : core_(core), previous_(core.kernel()) {
    core_.set_kernel(std::move(name));
  }
  ~KernelScope() { core_.set_kernel(previous_); }
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;

 private:
  NeuronCore& core_;
  std::string previous_;
};

// Allocates SBUF/PSUM tiles and releases them, newest first, when the pool is destroyed.
class TilePool {
 public:
  explicit TilePool(NeuronCore& core) : core_(core) {}
  ~TilePool() {
    for (auto it = tiles_.rbegin(); it != tiles_.rend(); ++it) {
      try {
        core_.release(*it);
      } catch (const std::exception&) {
        // Already released by hand, or a PSUM group left open by a kernel that threw: the
        // error that matters has already been reported.
      }
    }
  }
  TilePool(const TilePool&) = delete;
  TilePool& operator=(const TilePool&) = delete;

  View sbuf(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
            const std::string& name) {
    tiles_.push_back(core_.sbuf_alloc(partitions, free_shape, dtype, name));
    return tiles_.back();
  }
  View psum(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
            const std::string& name) {
    tiles_.push_back(core_.psum_alloc(partitions, free_shape, dtype, name));
    return tiles_.back();
  }

 private:
  NeuronCore& core_;
  std::vector<View> tiles_;
};

}  // namespace switchyard::neuron
