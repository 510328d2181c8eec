#include "backend/neuron/kernel_launch.h"

#include "core/error.h"

namespace switchyard::backend::neuron {

Launch::~Launch() {
  for (auto it = presented_.rbegin(); it != presented_.rend(); ++it) {
    try {
      core_.release(it->view);
    } catch (const std::exception&) {
      // Only after a kernel threw; its error is the one that matters.
    }
  }
}

View Launch::hbm(void* data, DType dtype, const std::vector<int64_t>& shape, const char* name) {
  for (const Presented& p : presented_) {
    if (p.data == data && p.shape == shape && p.view.dtype() == dtype) return p.view;
  }
  Presented p;
  p.view = core_.hbm_attach(data, shape, dtype, name);
  p.data = data;
  p.shape = shape;
  presented_.push_back(std::move(p));
  return presented_.back().view;
}

View Launch::hbm(const Tensor& t, const char* name, std::vector<int64_t> shape) {
  require(t.is_contiguous(), "simulator launch: {} must be dense, got {}", name, t.describe());
  if (shape.empty()) shape.assign(t.shape.begin(), t.shape.begin() + t.rank);
  if (shape.empty()) shape = {1};  // a scalar is one row of one element
  int64_t elements = 1;
  for (int64_t s : shape) elements *= s;
  require(elements == t.numel(),
          "simulator launch: {} has {} elements, not the {} of the shape it is used as", name,
          t.numel(), elements);
  return hbm(t.data, t.dtype, shape, name);
}

View Launch::optional(const Tensor& t, const char* name, std::vector<int64_t> shape) {
  return t.empty() ? View() : hbm(t, name, std::move(shape));
}

}  // namespace switchyard::backend::neuron
