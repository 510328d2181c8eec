// Where every GPT-2 parameter lives inside the one parameter allocation.
//
// Parameters, their gradients and both AdamW moments use this same layout, each in one allocation.
// Tensors that take weight decay (every matrix, including both embeddings) come first, the others
// (biases, LayerNorm gains and shifts) after, so the optimizer is two calls, not one per tensor.
// Linear weights are stored [out, in] (nn.Linear layout); Hugging Face's GPT-2 stores them [in, out]
// (Conv1D), which `hf_transposed` marks for the checkpoint code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/gpt_config.h"

namespace switchyard::model {

struct ParameterTensor {
  std::string name;            // Hugging Face GPT-2 name without the "transformer." prefix
  std::vector<int64_t> shape;  // shape in our layout
  size_t offset = 0;           // in floats, from the start of the allocation
  size_t numel = 0;
  bool hf_transposed = false;  // stored [in, out] in Hugging Face checkpoints
  bool decay = false;          // takes weight decay
};

// Float offsets of one transformer block's tensors.
struct LayerOffsets {
  size_t ln1_w, ln1_b, qkv_w, qkv_b, attn_proj_w, attn_proj_b;
  size_t ln2_w, ln2_b, fc_w, fc_b, fc_proj_w, fc_proj_b;
};

class ParameterLayout {
 public:
  explicit ParameterLayout(const GptConfig& config);

  const std::vector<ParameterTensor>& tensors() const { return tensors_; }
  // Null when no tensor has that name.
  const ParameterTensor* find(const std::string& name) const;
  size_t total() const { return total_; }
  // Floats [0, decay_end) take weight decay; [decay_end, total) do not.
  size_t decay_end() const { return decay_end_; }

  size_t wte = 0, wpe = 0, lnf_w = 0, lnf_b = 0;
  std::vector<LayerOffsets> layers;

 private:
  size_t add(const std::string& name, std::vector<int64_t> shape, bool hf_transposed, bool decay);
  std::vector<ParameterTensor> tensors_;
  size_t total_ = 0;
  size_t decay_end_ = 0;
};

}  // namespace switchyard::model
