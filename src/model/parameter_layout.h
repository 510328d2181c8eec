// Where every parameter lives inside the one parameter allocation, its Hugging Face name, and how
// it is initialised.
//
// Parameters, their gradients and both AdamW moments use this same layout, each in one fp32
// allocation. Tensors that take weight decay (every matrix, embeddings included) come first, the
// others (biases, norm gains and shifts) after, so the optimizer is two calls, not one per tensor.
// Linear weights are stored [out, in] (nn.Linear layout); a family whose checkpoints store a
// tensor [in, out] (GPT-2's Conv1D) marks it `hf_transposed` for the checkpoint code. Each family
// builds its layout (the table of its Hugging Face names) in its own file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace switchyard::model {

// How a freshly created model fills a tensor.
enum class Init { kZero, kOne, kNormal };

// How much of a tensor one decoded token reads: all of it, one row (an embedding table no
// product reads whole), or the chosen experts' share of a stack over experts (dimension 0).
enum class ReadPerToken { kAll, kOneRow, kChosenExperts };

struct ParameterTensor {
  std::string name;            // Hugging Face name (GPT-2: without the "transformer." prefix)
  std::vector<int64_t> shape;  // shape in our layout
  size_t offset = 0;           // in floats, from the start of the allocation
  size_t numel = 0;
  bool hf_transposed = false;  // stored [in, out] in Hugging Face checkpoints (the last two
                               // dimensions, for a stack of matrices such as experts)
  bool decay = false;          // takes weight decay
  bool follows_previous = false;  // placed right after the previous tensor (add_adjacent)
  Init init = Init::kZero;
  float init_std = 0.0f;       // for Init::kNormal
  ReadPerToken read = ReadPerToken::kAll;
  bool published_mxfp4 = false;  // published checkpoints hold it as MXFP4 (gpt-oss's expert
                                 // matrices): blocks of 32 along the last dimension of this layout
  int layer = -1;  // the transformer layer it belongs to; -1 for the embeddings, head and final norm
};

// Floats [begin, end) of the flat parameter (and gradient) vector.
struct FloatRange {
  size_t begin = 0;
  size_t end = 0;
  bool decay = false;  // inside the decayed region
  size_t size() const { return end - begin; }
};

class ParameterLayout {
 public:
  // Appends a tensor (64-byte aligned) and returns its offset. Decayed tensors must all come first.
  size_t add(const std::string& name, std::vector<int64_t> shape, bool hf_transposed, bool decay,
             Init init, float init_std = 0.0f);
  // Appends a tensor right after the previous one, without alignment padding, so that the two
  // read as one (separately named q, k and v projections as one packed q|k|v projection).
  size_t add_adjacent(const std::string& name, std::vector<int64_t> shape, bool hf_transposed,
                      bool decay, Init init, float init_std = 0.0f);

  // Tensors added after begin_layer(l) belong to layer l (ParameterTensor::layer), until the next
  // begin_layer or end_layers. Data-parallel training sends a layer's gradients as soon as the
  // backward pass has finished that layer (train/gradient_buckets.h).
  void begin_layer(int layer) { current_layer_ = layer; }
  void end_layers() { current_layer_ = -1; }

  // Marks how much of tensor `name` a decoded token reads (default: all).
  void set_read(const std::string& name, ReadPerToken read);
  // Marks tensor `name` as one that published checkpoints hold as MXFP4.
  void mark_published_mxfp4(const std::string& name);

  const std::vector<ParameterTensor>& tensors() const { return tensors_; }
  // Null when no tensor has that name.
  const ParameterTensor* find(const std::string& name) const;
  size_t total() const { return total_; }
  // Floats [0, decay_end) take weight decay; [decay_end, total) do not.
  size_t decay_end() const { return decay_end_; }

 private:
  size_t append(const std::string& name, std::vector<int64_t> shape, bool hf_transposed, bool decay,
                Init init, float init_std, bool aligned);
  // Throws Error when no tensor has that name.
  ParameterTensor& at(const std::string& name);

  std::vector<ParameterTensor> tensors_;
  size_t total_ = 0;
  size_t decay_end_ = 0;
  int current_layer_ = -1;
};

}  // namespace switchyard::model
