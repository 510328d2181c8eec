#include "model/parameter_layout.h"

#include <fmt/format.h>

namespace switchyard::model {

ParameterLayout::ParameterLayout(const GptConfig& config) {
  const int64_t C = config.channels, V = config.vocab_size, maxT = config.max_seq_len;
  const int L = config.num_layers;
  layers.resize(L);
  auto layer_name = [](int l, const char* rest) { return fmt::format("h.{}.{}", l, rest); };

  // Decayed matrices first.
  wte = add("wte.weight", {V, C}, false, true);
  wpe = add("wpe.weight", {maxT, C}, false, true);
  for (int l = 0; l < L; ++l) {
    LayerOffsets& o = layers[l];
    o.qkv_w = add(layer_name(l, "attn.c_attn.weight"), {3 * C, C}, true, true);
    o.attn_proj_w = add(layer_name(l, "attn.c_proj.weight"), {C, C}, true, true);
    o.fc_w = add(layer_name(l, "mlp.c_fc.weight"), {4 * C, C}, true, true);
    o.fc_proj_w = add(layer_name(l, "mlp.c_proj.weight"), {C, 4 * C}, true, true);
  }
  decay_end_ = total_;
  for (int l = 0; l < L; ++l) {
    LayerOffsets& o = layers[l];
    o.ln1_w = add(layer_name(l, "ln_1.weight"), {C}, false, false);
    o.ln1_b = add(layer_name(l, "ln_1.bias"), {C}, false, false);
    o.qkv_b = add(layer_name(l, "attn.c_attn.bias"), {3 * C}, false, false);
    o.attn_proj_b = add(layer_name(l, "attn.c_proj.bias"), {C}, false, false);
    o.ln2_w = add(layer_name(l, "ln_2.weight"), {C}, false, false);
    o.ln2_b = add(layer_name(l, "ln_2.bias"), {C}, false, false);
    o.fc_b = add(layer_name(l, "mlp.c_fc.bias"), {4 * C}, false, false);
    o.fc_proj_b = add(layer_name(l, "mlp.c_proj.bias"), {C}, false, false);
  }
  lnf_w = add("ln_f.weight", {C}, false, false);
  lnf_b = add("ln_f.bias", {C}, false, false);
}

size_t ParameterLayout::add(const std::string& name, std::vector<int64_t> shape, bool hf_transposed,
                            bool decay) {
  size_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<size_t>(d);
  // Keep every tensor 64-byte aligned so vectorised kernels never straddle a cache line start.
  size_t offset = (total_ + 15) / 16 * 16;
  tensors_.push_back({name, std::move(shape), offset, numel, hf_transposed, decay});
  total_ = offset + numel;
  return offset;
}

const ParameterTensor* ParameterLayout::find(const std::string& name) const {
  for (const ParameterTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace switchyard::model
