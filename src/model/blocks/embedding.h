// Token embeddings, with GPT-2's learned position embeddings when the family has them.
#pragma once

#include "model/blocks/block_context.h"

namespace switchyard::model::blocks {

struct TokenEmbedding {
  ParamRef tokens;     // [V, C]
  ParamRef positions;  // [context, C]; absent for families without learned positions
};

// out[N, C] = tokens[batch token] (+ positions[batch position]).
void embedding_forward(const BlockContext& c, const TokenEmbedding& e, const Tensor& out);
// The tables' gradients += dout scattered by token (and by position).
void embedding_backward(const BlockContext& c, const TokenEmbedding& e, const Tensor& dout);

}  // namespace switchyard::model::blocks
