#include "model/parameter_layout.h"

#include "core/error.h"

namespace switchyard::model {

size_t ParameterLayout::add(const std::string& name, std::vector<int64_t> shape,
                            bool hf_transposed, bool decay, Init init, float init_std) {
  require(!decay || decay_end_ == total_,
          "parameter layout: decayed tensor '{}' after tensors without decay", name);
  require(find(name) == nullptr, "parameter layout: tensor '{}' added twice", name);
  size_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<size_t>(d);
  // Keep every tensor 64-byte aligned so vectorised kernels never straddle a cache line start.
  const size_t offset = (total_ + 15) / 16 * 16;
  tensors_.push_back({name, std::move(shape), offset, numel, hf_transposed, decay, init, init_std});
  total_ = offset + numel;
  if (decay) decay_end_ = total_;
  return offset;
}

const ParameterTensor* ParameterLayout::find(const std::string& name) const {
  for (const ParameterTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace switchyard::model
