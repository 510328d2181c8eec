#include "model/parameter_layout.h"

#include "core/error.h"

namespace switchyard::model {

size_t ParameterLayout::add(const std::string& name, std::vector<int64_t> shape,
                            bool hf_transposed, bool decay, Init init, float init_std) {
  return append(name, std::move(shape), hf_transposed, decay, init, init_std, true);
}

size_t ParameterLayout::add_adjacent(const std::string& name, std::vector<int64_t> shape,
                                     bool hf_transposed, bool decay, Init init, float init_std) {
  require(!tensors_.empty(), "parameter layout: '{}' has no tensor to follow", name);
  require(decay == tensors_.back().decay,
          "parameter layout: '{}' cannot follow a tensor of the other decay group", name);
  return append(name, std::move(shape), hf_transposed, decay, init, init_std, false);
}

size_t ParameterLayout::append(const std::string& name, std::vector<int64_t> shape,
                               bool hf_transposed, bool decay, Init init, float init_std,
                               bool aligned) {
  require(!decay || decay_end_ == total_,
          "parameter layout: decayed tensor '{}' after tensors without decay", name);
  require(find(name) == nullptr, "parameter layout: tensor '{}' added twice", name);
  size_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<size_t>(d);
  // Keep every tensor 64-byte aligned so vectorised kernels never straddle a cache line start.
  const size_t offset = aligned ? (total_ + 15) / 16 * 16 : total_;
  tensors_.push_back(
      {name, std::move(shape), offset, numel, hf_transposed, decay, !aligned, init, init_std});
  tensors_.back().layer = current_layer_;
  total_ = offset + numel;
  if (decay) decay_end_ = total_;
  return offset;
}

ParameterTensor& ParameterLayout::at(const std::string& name) {
  for (ParameterTensor& t : tensors_) {
    if (t.name == name) return t;
  }
  fail("parameter layout: no tensor '{}'", name);
}

void ParameterLayout::set_read(const std::string& name, ReadPerToken read) { at(name).read = read; }

void ParameterLayout::mark_published_mxfp4(const std::string& name) { at(name).published_mxfp4 = true; }

const ParameterTensor* ParameterLayout::find(const std::string& name) const {
  for (const ParameterTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace switchyard::model
