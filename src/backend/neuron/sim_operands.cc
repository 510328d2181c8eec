#include "backend/neuron/sim_operands.h"

namespace switchyard::backend::neuron {

namespace {

constexpr OperandDtypes kFloat = OperandDtypes::kFloat, kF32 = OperandDtypes::kF32,
                        kI32 = OperandDtypes::kI32, kF64 = OperandDtypes::kF64,
                        kFloatOrMxfp4 = OperandDtypes::kFloatOrMxfp4,
                        kNone = OperandDtypes::kNone;
constexpr bool kOptional = true;

constexpr OperandRule kEmbedding[] = {{"out", kFloat},
                                      {"ids", kI32},
                                      {"table", kFloat},
                                      {"position_ids", kI32, kOptional},
                                      {"position_table", kFloat, kOptional},
                                      {"table_low", kNone, kOptional},
                                      {"position_low", kNone, kOptional}};
// dtable may be an activation gradient (the experts' row gather in bf16 mode: moe.cc), which the
// scatter accumulates into in its own dtype.
constexpr OperandRule kEmbeddingBackward[] = {{"dtable", kFloat},
                                              {"dposition_table", kF32, kOptional},
                                              {"dout", kFloat},
                                              {"ids", kI32},
                                              {"position_ids", kI32, kOptional}};
constexpr OperandRule kLayerNorm[] = {{"out", kFloat}, {"mean", kF32},   {"rstd", kF32},
                                      {"inp", kFloat}, {"weight", kF32}, {"bias", kF32}};
constexpr OperandRule kLayerNormBackward[] = {
    {"dinp", kFloat}, {"dweight", kF32}, {"dbias", kF32}, {"dout", kFloat},
    {"inp", kFloat},  {"weight", kF32},  {"mean", kF32},  {"rstd", kF32}};
constexpr OperandRule kRmsNorm[] = {
    {"out", kFloat}, {"rstd", kF32}, {"inp", kFloat}, {"weight", kF32}};
constexpr OperandRule kRmsNormBackward[] = {{"dinp", kFloat}, {"dweight", kF32},
                                            {"dout", kFloat}, {"inp", kFloat},
                                            {"weight", kF32}, {"rstd", kF32}};
constexpr OperandRule kClampedSwiglu[] = {{"out", kFloat}, {"inp", kFloat}};
constexpr OperandRule kClampedSwigluBackward[] = {
    {"dinp", kFloat}, {"inp", kFloat}, {"dout", kFloat}};
constexpr OperandRule kLinear[] = {
    {"out", kFloat}, {"inp", kFloat}, {"weight", kFloat}, {"bias", kF32, kOptional}};
constexpr OperandRule kLinearBackward[] = {
    {"dinp", kFloat, kOptional}, {"dweight", kF32}, {"dbias", kF32, kOptional},
    {"dout", kFloat},            {"inp", kFloat},   {"weight", kFloat}};
constexpr OperandRule kExpertLinear[] = {{"out", kFloat},
                                         {"inp", kFloat},
                                         {"weight", kFloatOrMxfp4},
                                         {"bias", kF32, kOptional},
                                         {"offsets", kI32}};
// MXFP4 weights are frozen: no backward pass.
constexpr OperandRule kExpertLinearBackward[] = {
    {"dinp", kFloat, kOptional}, {"dweight", kF32}, {"dbias", kF32, kOptional}, {"dout", kFloat},
    {"inp", kFloat},             {"weight", kFloat}, {"offsets", kI32}};
constexpr OperandRule kGelu[] = {{"out", kFloat}, {"inp", kFloat}};
constexpr OperandRule kGeluBackward[] = {{"dinp", kFloat}, {"inp", kFloat}, {"dout", kFloat}};
constexpr OperandRule kAdd[] = {{"out", kFloat}, {"a", kFloat}, {"b", kFloat}};
constexpr OperandRule kAccumulate[] = {{"dst", kFloat}, {"src", kFloat}};
constexpr OperandRule kCast[] = {{"out", kFloat}, {"inp", kFloat}};
constexpr OperandRule kAttention[] = {{"out", kFloat}, {"record", kF32},
                                      {"q", kFloat},   {"k", kFloat},
                                      {"v", kFloat},   {"sinks", kF32, kOptional}};
constexpr OperandRule kAttentionBackward[] = {
    {"dq", kFloat},   {"dk", kFloat},      {"dv", kFloat},   {"dsinks", kF32, kOptional},
    {"scratch", kF32, kOptional},          {"dout", kFloat}, {"out", kFloat},
    {"record", kF32}, {"q", kFloat},       {"k", kFloat},    {"v", kFloat},
    {"sinks", kF32, kOptional}};
constexpr OperandRule kAttentionDecode[] = {{"out", kFloat},     {"q", kFloat},
                                            {"k", kFloat},       {"v", kFloat},
                                            {"k_cache", kFloat}, {"v_cache", kFloat}};
constexpr OperandRule kKvCacheWrite[] = {
    {"k_cache", kFloat}, {"v_cache", kFloat}, {"k", kFloat}, {"v", kFloat}, {"slots", kI32}};
constexpr OperandRule kPagedAttention[] = {
    {"out", kFloat},         {"q", kFloat},           {"k_cache", kFloat},
    {"v_cache", kFloat},     {"block_tables", kI32},  {"query_start", kI32},
    {"context_len", kI32},   {"sinks", kF32, kOptional}};
constexpr OperandRule kRope[] = {
    {"x", kFloat}, {"cos", kF32}, {"sin", kF32}, {"positions", kI32}};
constexpr OperandRule kTopKRouting[] = {
    {"expert_ids", kI32}, {"weights", kF32}, {"logits", kFloat}};
constexpr OperandRule kTopKRoutingBackward[] = {
    {"dlogits", kFloat}, {"dweights", kF32}, {"weights", kF32}, {"expert_ids", kI32}};
constexpr OperandRule kGroupByExpert[] = {{"order", kI32},
                                          {"rows", kI32},
                                          {"position", kI32},
                                          {"offsets", kI32},
                                          {"expert_ids", kI32}};
constexpr OperandRule kExpertCombine[] = {
    {"out", kFloat}, {"expert_out", kFloat}, {"weights", kF32}, {"position", kI32}};
constexpr OperandRule kExpertCombineBackward[] = {
    {"dexpert_out", kFloat}, {"dweights", kF32}, {"dout", kFloat},
    {"expert_out", kFloat},  {"weights", kF32},  {"position", kI32}};
constexpr OperandRule kRouterLoadStats[] = {
    {"totals", kF64}, {"logits", kFloat}, {"expert_ids", kI32}};
constexpr OperandRule kRouterLoadBackward[] = {
    {"dlogits", kFloat}, {"logits", kFloat}, {"totals", kF64}};
constexpr OperandRule kCrossEntropy[] = {{"losses", kF32}, {"logits", kFloat}, {"targets", kI32}};
constexpr OperandRule kCrossEntropyBackward[] = {
    {"dlogits", kFloat}, {"logits", kFloat}, {"targets", kI32}, {"losses", kF32, kOptional}};
constexpr OperandRule kSumOfSquares[] = {{"total", kF64}, {"x", kF32}};
constexpr OperandRule kAccumulateSum[] = {{"total", kF64}, {"x", kF32}};
constexpr OperandRule kAdamW[] = {{"params", kF32},
                                  {"grads", kF32},
                                  {"m", kF32},
                                  {"v", kF32},
                                  {"grad_sum_of_squares", kF64, kOptional},
                                  {"params_copy", kFloat, kOptional},
                                  {"params_low", kNone, kOptional}};

}  // namespace

std::span<const OperandRule> native_operands(OpKind kind) {
  switch (kind) {
    case OpKind::kEmbedding: return kEmbedding;
    case OpKind::kEmbeddingBackward: return kEmbeddingBackward;
    case OpKind::kLayerNorm: return kLayerNorm;
    case OpKind::kLayerNormBackward: return kLayerNormBackward;
    case OpKind::kRmsNorm: return kRmsNorm;
    case OpKind::kRmsNormBackward: return kRmsNormBackward;
    case OpKind::kClampedSwiglu: return kClampedSwiglu;
    case OpKind::kClampedSwigluBackward: return kClampedSwigluBackward;
    case OpKind::kLinear: return kLinear;
    case OpKind::kLinearBackward: return kLinearBackward;
    case OpKind::kExpertLinear: return kExpertLinear;
    case OpKind::kExpertLinearBackward: return kExpertLinearBackward;
    case OpKind::kGelu: return kGelu;
    case OpKind::kGeluBackward: return kGeluBackward;
    case OpKind::kAdd: return kAdd;
    case OpKind::kAccumulate: return kAccumulate;
    case OpKind::kCast: return kCast;
    case OpKind::kAttention: return kAttention;
    case OpKind::kAttentionBackward: return kAttentionBackward;
    case OpKind::kAttentionDecode: return kAttentionDecode;
    case OpKind::kKvCacheWrite: return kKvCacheWrite;
    case OpKind::kPagedAttention: return kPagedAttention;
    case OpKind::kCrossEntropy: return kCrossEntropy;
    case OpKind::kCrossEntropyBackward: return kCrossEntropyBackward;
    case OpKind::kSumOfSquares: return kSumOfSquares;
    case OpKind::kAccumulateSum: return kAccumulateSum;
    case OpKind::kAdamW: return kAdamW;
    case OpKind::kRope: return kRope;
    case OpKind::kTopKRouting: return kTopKRouting;
    case OpKind::kTopKRoutingBackward: return kTopKRoutingBackward;
    case OpKind::kGroupByExpert: return kGroupByExpert;
    case OpKind::kExpertCombine: return kExpertCombine;
    case OpKind::kExpertCombineBackward: return kExpertCombineBackward;
    case OpKind::kRouterLoadStats: return kRouterLoadStats;
    case OpKind::kRouterLoadBackward: return kRouterLoadBackward;
    case OpKind::kAddLayerNorm:
    case OpKind::kLinearGelu:
      return {};
  }
  return {};
}

bool accepts(OperandDtypes rule, DType dtype) {
  switch (rule) {
    case OperandDtypes::kFloat: return dtype == DType::kF32 || dtype == DType::kBF16;
    case OperandDtypes::kFloatOrMxfp4:
      return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kMXFP4;
    case OperandDtypes::kF32: return dtype == DType::kF32;
    case OperandDtypes::kI32: return dtype == DType::kI32;
    case OperandDtypes::kF64: return dtype == DType::kF64;
    case OperandDtypes::kNone: return false;
  }
  return false;
}

const char* describe(OperandDtypes rule) {
  switch (rule) {
    case OperandDtypes::kFloat: return "fp32 or bf16";
    case OperandDtypes::kFloatOrMxfp4: return "fp32, bf16 or mxfp4";
    case OperandDtypes::kF32: return "fp32";
    case OperandDtypes::kI32: return "int32";
    case OperandDtypes::kF64: return "fp64";
    case OperandDtypes::kNone: return "absent";
  }
  return "?";
}

}  // namespace switchyard::backend::neuron
