// Which kernel is issuing instructions and how many instructions the core has issued: what rule
// errors ("kernel 'gemm', instruction #12 (matmul): ...") and trace slices name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace switchyard::neuron {

class KernelContext {
 public:
  // Makes `name` the current kernel (names are interned: a kernel keeps its id across launches).
  void set_kernel(std::string name) {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) {
        kernel_ = static_cast<int32_t>(i);
        return;
      }
    }
    names_.push_back(std::move(name));
    kernel_ = static_cast<int32_t>(names_.size() - 1);
  }
  int32_t kernel_id() const { return kernel_; }
  const std::string& kernel_name() const { return names_[kernel_]; }
  const std::string& name_of(int32_t id) const { return names_[id]; }

  // Instructions issued so far; the number of the one being issued.
  int64_t instructions() const { return instructions_; }
  void count_instruction() { ++instructions_; }

 private:
  std::vector<std::string> names_{"main"};
  int32_t kernel_ = 0;
  int64_t instructions_ = 0;
};

}  // namespace switchyard::neuron
