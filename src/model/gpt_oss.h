// The gpt-oss family (OpenAI's open-weight mixture-of-experts models, docs/models.md): token
// embeddings without positions; pre-norm blocks of RMSNorm, grouped-query self-attention with
// biases, RoPE (YaRN-scaled), a learned sink per head and a sliding window on the layers
// layer_types marks, and a mixture of clamped-SwiGLU experts; a final RMSNorm and an untied head.
// Hugging Face's gpt-oss names are its parameter table (gpt_oss_layout).
//
// Training adds the router's load-balancing loss (router_aux_loss_coef times it) to the mean
// cross-entropy; forward() returns the cross-entropy alone, auxiliary_loss() the other term.
#pragma once

#include <vector>

#include "model/blocks/attention.h"
#include "model/blocks/embedding.h"
#include "model/blocks/head.h"
#include "model/blocks/moe.h"
#include "model/blocks/rms_norm.h"
#include "model/activation_plan.h"
#include "model/arena.h"
#include "model/model.h"

namespace switchyard::model {

// gpt-oss's parameters in Hugging Face's names, decayed matrices first (every weight matrix, the
// embeddings and the head; not biases, norm gains or sinks). Expert matrices are [E, out, in]
// here (the MXFP4 checkpoints' orientation) and [E, in, out] in unquantised checkpoints
// (hf_transposed). q, k and v lie side by side so that they read as one packed projection.
// Initialisation as Hugging Face's: normal(0, 0.02) for matrices and sinks, biases 0, gains 1.
ParameterLayout gpt_oss_layout(const ModelConfig& config);

class GptOss final : public Model {
 public:
  // frozen: inference-only weights as stored (Model::create_frozen), or null.
  GptOss(backend::Backend& backend, const ModelConfig& config, const WeightSource* frozen = nullptr);

  float auxiliary_loss() const override;

 private:
  struct Layer {
    blocks::RmsNorm norm1, norm2;
    blocks::SelfAttention attention;
    blocks::MixtureOfExperts moe;
  };
  // One layer's activations (one set per layer for training, one shared set otherwise).
  struct LayerActivations {
    Tensor norm1, rstd1;
    blocks::AttentionActivations attention;
    Tensor attn_out, residual2, norm2, rstd2;
    blocks::MoeActivations moe;
    Tensor moe_out, residual3;
  };

  void forward_layers(const blocks::BlockContext& c, bool for_training) override;
  void backward_layers(const blocks::BlockContext& c, float loss_scale) override;
  Tensor logits() const override { return head_acts_.logits; }
  Tensor losses() const override { return head_acts_.losses; }

  void build_layers();
  void upload_rope_tables();
  void cut_views(const ActivationPlan& need, Arena& activations, Arena& scratch);
  void cut_layer(LayerActivations& l, const ActivationPlan& need, Arena& arena) const;
  void run_layer(const blocks::BlockContext& c, int l, const LayerActivations& h, const Tensor& x,
                 bool with_targets);

  blocks::TokenEmbedding embedding_;
  std::vector<Layer> layers_;
  blocks::RmsNorm final_norm_;
  blocks::LmHead head_;
  DeviceBuffer rope_buffer_;  // cos | sin tables for every position

  ActivationStore store_;
  Tensor encoded_;
  std::vector<LayerActivations> acts_;
  Tensor final_, final_rstd_;
  blocks::HeadActivations head_acts_;
  Tensor balance_totals_;  // [2, E] fp64: the load-balancing statistics of the last pass
  bool balance_valid_ = false;
  // The backward pass's buffers, reused by every layer.
  Tensor d_residual_, d_norm_, d_final_;
  blocks::AttentionScratch attention_scratch_;
  blocks::MoeScratch moe_scratch_;
};

}  // namespace switchyard::model
