#include "model/tensor_parallel_shard.h"

#include <fmt/format.h>

#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::model {

namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The widest of `degree` shards of `width` split in whole blocks of `block`.
int widest_shard(int width, int degree, int block) {
  if (width % block != 0) return ceil_div(width, degree);
  return ceil_div(width / block, degree) * block;
}

}  // namespace

ModelConfig tensor_parallel_shard(const ModelConfig& config, int degree, bool mxfp4_experts) {
  require(degree >= 1, "the tensor-parallel degree must be at least 1, got {}", degree);
  if (degree == 1) return config;
  require(config.is_gpt_oss(), "tensor-parallel shards are modelled for gpt-oss only, not {}",
          config.family);
  const int heads = config.num_heads, kv_heads = config.kv_heads();
  require(heads % degree == 0 && kv_heads % degree == 0,
          "tensor-parallel degree {} must divide the {} query heads and {} key-value heads", degree,
          heads, kv_heads);
  ModelConfig shard = config;
  shard.num_heads = heads / degree;
  shard.num_kv_heads = kv_heads / degree;
  shard.intermediate = widest_shard(config.mlp_hidden(), degree, mxfp4_experts ? static_cast<int>(dtype_block_elements(DType::kMXFP4)) : 1);
  shard.vocab_size = ceil_div(config.vocab_size, degree);
  // Special tokens belong to one vocabulary shard; the shard's own ids are local.
  shard.eos_token_id = shard.pad_token_id = -1;
  shard.validate();
  return shard;
}

int tensor_parallel_all_reduces(const ModelConfig& config, int degree) {
  return degree > 1 ? 2 * config.num_layers + 1 : 0;
}

std::string describe_shard(const ModelConfig& full, const ModelConfig& shard, int degree,
                           bool mxfp4_experts) {
  return fmt::format(
      "tensor-parallel over {} cores, each holding {} of {} query heads, {} of {} key-value heads, "
      "{} of {} columns of every expert{} and {} of {} vocabulary rows; {} "
      "all-reduces of the activations and one of the sampled tokens a step",
      degree, shard.num_heads, full.num_heads, shard.kv_heads(), full.kv_heads(),
      shard.mlp_hidden(), full.mlp_hidden(), mxfp4_experts ? " (whole MXFP4 blocks)" : "",
      shard.vocab_size, full.vocab_size,
      tensor_parallel_all_reduces(full, degree));
}

}  // namespace switchyard::model
