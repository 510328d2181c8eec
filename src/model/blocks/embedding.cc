#include "model/blocks/embedding.h"

namespace switchyard::model::blocks {

void embedding_forward(const BlockContext& c, const TokenEmbedding& e, const Tensor& out) {
  const bool positions = e.positions.present();
  c.backend.run(ops::Embedding{.out = out, .ids = c.batch.tokens, .table = e.tokens.value,
                               .position_ids = positions ? c.batch.positions : Tensor{},
                               .position_table = e.positions.value,
                               .table_low = e.tokens.low, .position_low = e.positions.low});
}

void embedding_backward(const BlockContext& c, const TokenEmbedding& e, const Tensor& dout) {
  const bool positions = e.positions.present();
  c.ready_to_add(e.tokens.grad);
  c.ready_to_add(e.positions.grad);
  c.backend.run(ops::EmbeddingBackward{.dtable = e.tokens.grad,
                                       .dposition_table = e.positions.grad, .dout = dout,
                                       .ids = c.batch.tokens,
                                       .position_ids = positions ? c.batch.positions : Tensor{}});
}

}  // namespace switchyard::model::blocks
