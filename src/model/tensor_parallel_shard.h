// The part of a model one device of a tensor-parallel group holds (Megatron-style layout), as a
// model of its own, so that a simulator can time one device's share of a step.
//
// With degree T: query and key-value heads are split T ways (each device runs whole heads); the
// MLP's or every expert's inner width is split T ways (the first product column-parallel, the
// second row-parallel); the token embedding and the output head are split by vocabulary. The
// residual stream, the norms and the router are replicated. Each device's step ends in
// all-reduces of the activations: after attention's output projection and after the MLP in every
// layer, after the vocabulary-parallel embedding, and one (small) for the sampled token over the
// vocabulary shards: tensor_parallel_all_reduces().
//
// MXFP4 weights scale blocks of 32 along a matrix's input width, so the second expert product's
// inner width splits in whole blocks: where they do not divide by T, some devices hold one block
// more, and the step waits for those; the shard is the largest one (gpt-oss's 2880 = 90 blocks
// over 8 devices: 6 of 11 blocks and 2 of 12; the shard holds 12, 384 columns).
#pragma once

#include <string>

#include "model/model_config.h"

namespace switchyard::model {

// One device's shard of `config` at degree `degree` (>= 1; 1 returns the config unchanged);
// mxfp4_experts: the expert widths split in whole MXFP4 blocks (above), else evenly (rounded up).
// Throws Error naming the field that does not divide: heads and key-value heads must divide by
// the degree.
ModelConfig tensor_parallel_shard(const ModelConfig& config, int degree, bool mxfp4_experts = true);

// All-reduces of a [tokens, channels] activation per step of the whole model (2 per layer plus
// the embedding's); the sampled token's reduction over vocabulary shards is one more, of a few
// bytes per token. 0 at degree 1.
int tensor_parallel_all_reduces(const ModelConfig& config, int degree);

// "tensor-parallel over 8 cores, each holding 8 of 64 query heads, 1 of 8 key-value heads, 384 of
// 2880 expert columns (whole MXFP4 blocks) and 25136 of 201088 vocabulary rows; 49 all-reduces of
// the activations and one of the sampled tokens a step".
std::string describe_shard(const ModelConfig& full, const ModelConfig& shard, int degree,
                           bool mxfp4_experts = true);

}  // namespace switchyard::model
