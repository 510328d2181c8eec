// The GPT-2 family: token and learned position embeddings, pre-norm blocks of multi-head
// self-attention and a tanh-GELU MLP (4 x channels), a final LayerNorm, and a head tied to the
// token embedding. Hugging Face's GPT-2 names are its parameter table (gpt2_layout).
#pragma once

#include <vector>

#include "model/blocks/attention.h"
#include "model/blocks/embedding.h"
#include "model/blocks/head.h"
#include "model/blocks/mlp.h"
#include "model/blocks/norm.h"
#include "model/activation_plan.h"
#include "model/arena.h"
#include "model/model.h"

namespace switchyard::model {

// GPT-2's parameters in Hugging Face's names, decayed matrices first; GPT-2's initialisation:
// weights normal(0, 0.02), residual projections (attn.c_proj, mlp.c_proj) normal(0, 0.02 /
// sqrt(2 L)), biases 0, LayerNorm gains 1 and shifts 0.
ParameterLayout gpt2_layout(const ModelConfig& config);

class Gpt2 final : public Model {
 public:
  // frozen: inference-only weights as stored (Model::create_frozen), or null.
  Gpt2(backend::Backend& backend, const ModelConfig& config, const WeightSource* frozen = nullptr);

 private:
  struct Layer {
    blocks::LayerNorm ln1, ln2;
    blocks::SelfAttention attention;
    blocks::DenseMlp mlp;
  };
  // One layer's activations. Training keeps one set per layer for the backward pass; inference
  // runs every layer through one set.
  struct LayerActivations {
    Tensor ln1;
    blocks::NormStats ln1_stats;
    blocks::AttentionActivations attention;
    Tensor attn_out, residual2, ln2;
    blocks::NormStats ln2_stats;
    blocks::MlpActivations mlp;
    Tensor mlp_out, residual3;
  };

  void forward_layers(const blocks::BlockContext& c, bool for_training) override;
  void backward_layers(const blocks::BlockContext& c, float loss_scale) override;
  Tensor logits() const override { return head_acts_.logits; }
  Tensor losses() const override { return head_acts_.losses; }

  // Takes every activation (and, for training, scratch) piece from the arenas in a fixed order.
  void cut_views(const ActivationPlan& need, Arena& activations, Arena& scratch);

  blocks::TokenEmbedding embedding_;
  std::vector<Layer> layers_;
  blocks::LayerNorm final_norm_;
  blocks::LmHead head_;

  ActivationStore store_;
  Tensor encoded_;
  std::vector<LayerActivations> acts_;
  Tensor lnf_;
  blocks::NormStats lnf_stats_;
  blocks::HeadActivations head_acts_;
  // The backward pass's buffers, reused by every layer.
  Tensor d_residual_, d_ln_, d_lnf_;
  blocks::AttentionScratch attention_scratch_;
  blocks::MlpScratch mlp_scratch_;
};

}  // namespace switchyard::model
