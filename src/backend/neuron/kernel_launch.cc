#include "backend/neuron/kernel_launch.h"

#include <span>

#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace

Launch::Launch(NeuronCore& core, DType activations) : core_(core), activations_(activations) {}

Launch::~Launch() {
  for (auto it = tensors_.rbegin(); it != tensors_.rend(); ++it) {
    try {
      core_.release(it->view);
    } catch (const std::exception&) {
      // Only after a kernel threw; its error is the one that matters.
    }
  }
}

View Launch::present(const void* data, std::vector<int64_t> shape, DType dtype, const char* name,
                     bool staged, bool output, bool load) {
  const int64_t elements = element_count(shape);
  for (Tensor& t : tensors_) {
    if (t.data == data && t.elements == elements && t.view.dtype() == dtype) {
      t.output = t.output || output;
      return t.view;
    }
  }
  Tensor t;
  t.data = data;
  t.elements = elements;
  t.staged = staged;
  t.output = output;
  if (staged) {
    t.view = core_.hbm_alloc(shape, dtype, name);
    if (load) {
      core_.write(t.view, std::span<const float>(static_cast<const float*>(data),
                                                 static_cast<size_t>(elements)));
    }
  } else {
    t.view = core_.hbm_attach(const_cast<void*>(data), shape, dtype, name);
  }
  tensors_.push_back(t);
  return t.view;
}

View Launch::fp32(const float* data, std::vector<int64_t> shape, const char* name) {
  return present(data, std::move(shape), DType::kF32, name, false, false, false);
}

View Launch::int32(const int32_t* data, std::vector<int64_t> shape, const char* name) {
  return present(data, std::move(shape), DType::kI32, name, false, false, false);
}

View Launch::activation_in(const float* data, std::vector<int64_t> shape, const char* name) {
  const bool staged = activations_ != DType::kF32;
  return present(data, std::move(shape), activations_, name, staged, false, true);
}

View Launch::activation_out(float* data, std::vector<int64_t> shape, const char* name,
                            bool accumulate) {
  const bool staged = activations_ != DType::kF32;
  return present(data, std::move(shape), activations_, name, staged, true, accumulate);
}

void Launch::finish() {
  for (const Tensor& t : tensors_) {
    if (!t.staged || !t.output) continue;
    core_.read(t.view, std::span<float>(static_cast<float*>(const_cast<void*>(t.data)),
                                        static_cast<size_t>(t.elements)));
  }
  core_.fence();
}

}  // namespace switchyard::backend::neuron
