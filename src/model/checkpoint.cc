#include "model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mxfp4_quantize.h"
#include "model/file_set_commit.h"
#include "model/safetensors.h"

namespace switchyard::model {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kStateFile = "training_state.safetensors";
constexpr const char* kPrefix = "transformer.";
constexpr const char* kBlocksSuffix = "_blocks";
constexpr const char* kScalesSuffix = "_scales";
constexpr const char* kParametersTensor = "parameters";  // fp32 weights beside lossy ones

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open {}: {}", path, fs::exists(path) ? "unreadable" : "no such file");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", path, e.what());
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Buffers Hugging Face keeps beside the weights (attention masks) and the tied LM head.
bool is_ignorable(const std::string& name) {
  return name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name == "lm_head.weight";
}

// GPT-2's names are written with the "transformer." prefix, as transformers saves them; gpt-oss's
// carry their own ("model.", "lm_head.").
std::string name_prefix(const ModelConfig& config) { return config.is_gpt_oss() ? "" : kPrefix; }

// A tensor as a stack of matrices over its last two dimensions.
struct MatrixStack {
  int64_t count = 1, rows = 0, cols = 0;
};
MatrixStack matrix_stack(const std::vector<int64_t>& shape) {
  MatrixStack m{1, shape[shape.size() - 2], shape[shape.size() - 1]};
  for (size_t d = 0; d + 2 < shape.size(); ++d) m.count *= shape[d];
  return m;
}

// out[k, c, r] = in[k, r, c] for each of `count` [rows, cols] matrices.
void transpose_matrices(const float* in, float* out, int64_t count, int64_t rows, int64_t cols) {
  for (int64_t k = 0; k < count; ++k) {
    const float* a = in + k * rows * cols;
    float* b = out + k * rows * cols;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) b[c * rows + r] = a[r * cols + c];
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) fail("cannot write {}", path);
}

// What the published MXFP4 checkpoints of gpt-oss say in config.json: the modules left in bf16.
nlohmann::json published_quantization_config() {
  return {{"modules_to_not_convert",
           {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"}},
          {"quant_method", "mxfp4"}};
}

// Tensor t (`data`, in the layout's orientation) as NAME_blocks [..., rows, cols / 32, 16] and
// NAME_scales [..., rows, cols / 32]: the inverse of read_mxfp4 below.
void add_mxfp4(SafetensorsWriter& writer, const std::string& name, const ParameterTensor& t, const float* data) {
  const Mxfp4Tensor q = quantize_mxfp4(name, std::span<const float>(data, t.numel), t.shape.back());
  std::vector<int64_t> scales_shape = t.shape;
  scales_shape.back() /= 32;
  std::vector<int64_t> blocks_shape = scales_shape;
  blocks_shape.push_back(16);
  writer.add(name + kBlocksSuffix, DType::kU8, blocks_shape, q.blocks.data());
  writer.add(name + kScalesSuffix, DType::kU8, scales_shape, q.scales.data());
}

void add_bf16(SafetensorsWriter& writer, const std::string& name, const std::vector<int64_t>& shape,
              const float* data, size_t numel) {
  std::vector<uint16_t> bits(numel);
  for (size_t i = 0; i < numel; ++i) bits[i] = float_to_bf16(data[i]);
  writer.add(name, DType::kBF16, shape, bits.data());
}

// config.json and model.safetensors (the parameters `values` in `format`), staged in `commit`.
void stage_model(const Model& model, const std::vector<float>& values, FileSetCommit& commit,
                 const nlohmann::json& info, const SaveFormat& format) {
  check_save_format(model, format);
  nlohmann::json config = config_to_json(model.config());
  config["torch_dtype"] = format.dtype == DType::kBF16 ? "bfloat16" : "float32";
  if (format.mxfp4_experts) config["quantization_config"] = published_quantization_config();
  if (!info.empty()) config["switchyard"] = info;
  write_text_file(commit.stage(kConfigFile), config.dump(2) + "\n");

  const ParameterLayout& layout = model.layout();
  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  const std::string prefix = name_prefix(model.config());
  std::vector<float> transposed;
  for (const ParameterTensor& t : layout.tensors()) {
    const float* data = values.data() + t.offset;
    if (format.mxfp4_experts && t.published_mxfp4) {
      add_mxfp4(writer, prefix + t.name, t, data);
      continue;
    }
    std::vector<int64_t> shape = t.shape;
    if (t.hf_transposed) {
      transposed.resize(t.numel);
      const MatrixStack m = matrix_stack(shape);
      transpose_matrices(data, transposed.data(), m.count, m.rows, m.cols);
      data = transposed.data();
      std::swap(shape[shape.size() - 2], shape[shape.size() - 1]);
    }
    if (format.dtype == DType::kBF16) {
      add_bf16(writer, prefix + t.name, shape, data, t.numel);
    } else {
      writer.add_f32(prefix + t.name, shape, data);
    }
  }
  writer.write_in_place(commit.stage(kWeightsFile));
}

}  // namespace

ModelConfig read_config(const std::string& directory) {
  std::string path = (fs::path(directory) / kConfigFile).string();
  if (!fs::is_directory(directory)) fail("model directory {} does not exist", directory);
  recover_file_set(directory);
  try {
    return config_from_json(read_json_file(path));
  } catch (const Error& e) {
    std::string message = e.what();
    if (message.starts_with("config.json")) fail("{}{}", path, message.substr(11));
    throw;
  }
}

nlohmann::json read_switchyard_section(const std::string& directory) {
  recover_file_set(directory);
  nlohmann::json json = read_json_file((fs::path(directory) / kConfigFile).string());
  auto it = json.find("switchyard");
  return it != json.end() && it->is_object() ? *it : nlohmann::json::object();
}

std::map<std::string, std::string> read_switchyard_info(const std::string& directory) {
  std::map<std::string, std::string> info;
  const nlohmann::json section = read_switchyard_section(directory);
  for (auto& [key, value] : section.items()) {
    info[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  return info;
}

namespace {

// A tensor stored as MXFP4 (gpt-oss's experts): `name`_blocks uint8 [..., rows, cols / 32, 16]
// and `name`_scales uint8 [..., rows, cols / 32], decoded to [..., rows, cols] (the layout's own
// orientation, so nothing is transposed).
template <typename Tensors>
void read_mxfp4(const Tensors& file, const std::string& name, const ParameterTensor& t, float* out) {
  const std::string blocks_name = name + kBlocksSuffix, scales_name = name + kScalesSuffix;
  const TensorInfo* blocks = file.find(blocks_name);
  const TensorInfo* scales = file.find(scales_name);
  if (!scales) fail("{}: tensor '{}' has MXFP4 blocks but no '{}'", file.source(), name, scales_name);
  std::vector<int64_t> groups = t.shape;
  require(groups.back() % 32 == 0, "{}: tensor '{}' has rows of {} values, not whole MXFP4 blocks",
          file.source(), name, groups.back());
  groups.back() /= 32;
  std::vector<int64_t> codes = groups;
  codes.push_back(16);
  if (blocks->dtype != DType::kU8 || blocks->shape != codes) {
    fail("{}: tensor '{}' is {} {}, but the model config implies U8 {}", file.source(), blocks_name,
         dtype_name(blocks->dtype), shape_string(blocks->shape), shape_string(codes));
  }
  if (scales->dtype != DType::kU8 || scales->shape != groups) {
    fail("{}: tensor '{}' is {} {}, but the model config implies U8 {}", file.source(), scales_name,
         dtype_name(scales->dtype), shape_string(scales->shape), shape_string(groups));
  }
  const std::span<const uint8_t> code_bytes = file.raw(blocks_name), scale_bytes = file.raw(scales_name);
  for (size_t b = 0; b < scale_bytes.size(); ++b) {
    decode_mxfp4_block(code_bytes.data() + 16 * b, scale_bytes[b], out + 32 * b);
  }
}

// SafetensorsFile and SafetensorsSet alike: find, read_f32, raw and source. Writes tensor t (in
// the layout's orientation) to out.
template <typename Tensors>
void read_hf_tensor_into(const ParameterTensor& t, const Tensors& file, const std::string& prefix,
                         float* out) {
  std::string name = prefix + t.name;
  const TensorInfo* info = file.find(name);
  if (!info && prefix.empty()) info = file.find(kPrefix + t.name);
  if (!info && file.find(name + kBlocksSuffix)) {
    read_mxfp4(file, name, t, out);
    return;
  }
  if (!info) fail("{}: missing tensor '{}'", file.source(), name);
  std::vector<int64_t> expected = t.shape;
  if (t.hf_transposed) std::swap(expected[expected.size() - 2], expected[expected.size() - 1]);
  if (info->shape != expected) {
    fail("{}: tensor '{}' has shape {}, but the model config implies {}", file.source(), info->name,
         shape_string(info->shape), shape_string(expected));
  }
  std::vector<float> data = file.read_f32(info->name);
  if (t.hf_transposed) {
    // File [..., in, out] -> memory [..., out, in].
    const MatrixStack m = matrix_stack(expected);
    transpose_matrices(data.data(), out, m.count, m.rows, m.cols);
  } else {
    std::copy(data.begin(), data.end(), out);
  }
}

template <typename Tensors>
std::vector<float> read_hf_tensors_from(const ParameterLayout& layout, const Tensors& file,
                                        const std::string& prefix) {
  std::vector<float> values(layout.total(), 0.0f);
  for (const ParameterTensor& t : layout.tensors()) {
    read_hf_tensor_into(t, file, prefix, values.data() + t.offset);
  }
  return values;
}

}  // namespace

std::vector<float> read_hf_tensors(const ParameterLayout& layout, const SafetensorsFile& file,
                                   const std::string& prefix) {
  return read_hf_tensors_from(layout, file, prefix);
}

std::vector<float> read_hf_tensors(const ParameterLayout& layout, const SafetensorsSet& file,
                                   const std::string& prefix) {
  return read_hf_tensors_from(layout, file, prefix);
}

std::vector<float> read_hf_tensor(const ParameterTensor& t, const SafetensorsSet& file) {
  std::vector<float> values(t.numel);
  read_hf_tensor_into(t, file, "", values.data());
  return values;
}

void load_weights(Model& model, const std::string& directory) {
  recover_file_set(directory);
  const SafetensorsSet file = SafetensorsSet::open(directory);
  const ParameterLayout& layout = model.layout();
  // Every tensor in the files must be one the model knows (or a buffer Hugging Face adds).
  std::set<std::string> seen;
  const bool gpt_oss = model.config().is_gpt_oss();
  for (const TensorInfo* info : file.tensors()) {
    std::string name = info->name;
    if (!gpt_oss) {
      if (name.starts_with(kPrefix)) name = name.substr(12);
      if (is_ignorable(name)) continue;
    }
    // An MXFP4 tensor comes as two: its blocks and its scales.
    std::string base = name;
    for (const std::string suffix : {kBlocksSuffix, kScalesSuffix}) {
      if (gpt_oss && name.ends_with(suffix)) base = name.substr(0, name.size() - suffix.size());
    }
    if (!layout.find(base)) {
      fail("{}: unexpected tensor '{}' (not part of a {} model)", file.source(), info->name,
           gpt_oss ? "gpt-oss" : "GPT-2");
    }
    if (!seen.insert(name).second) fail("{}: tensor '{}' appears twice", file.source(), name);
  }
  model.parameters_from_host(read_hf_tensors(layout, file, ""));
}

void check_save_format(const Model& model, const SaveFormat& format) {
  require(format.dtype == DType::kF32 || format.dtype == DType::kBF16,
          "checkpoints hold fp32 or bf16 weights, not {}", dtype_name(format.dtype));
  if (!format.mxfp4_experts) return;
  bool any = false;
  for (const ParameterTensor& t : model.layout().tensors()) {
    if (!t.published_mxfp4) continue;
    any = true;
    require(t.shape.back() % 32 == 0,
            "--save-mxfp4: tensor '{}' has rows of {} values, which do not split into MXFP4 blocks of 32 "
            "(the hidden and intermediate sizes must be multiples of 32)",
            t.name, t.shape.back());
  }
  require(any, "--save-mxfp4 quantises gpt-oss's expert weights; a {} model has none", model.config().family);
}

void save_model(const Model& model, const std::string& directory,
                const std::map<std::string, std::string>& info, const SaveFormat& format) {
  FileSetCommit commit(directory);
  stage_model(model, model.parameters_to_host(), commit,
              info.empty() ? nlohmann::json::object() : nlohmann::json(info), format);
  commit.commit();
}

void save_training_checkpoint(const Model& model, const std::string& directory, const nlohmann::json& info,
                              const TrainingState& state, const SaveFormat& format,
                              const OptimizerMoments* moments) {
  FileSetCommit commit(directory);
  SafetensorsWriter writer;
  const int64_t n = static_cast<int64_t>(model.layout().total());
  {  // the host copy of the weights goes before the moments come
    const std::vector<float> parameters = model.parameters_to_host();
    stage_model(model, parameters, commit, info, format);
    // The weights file lost precision: a resumed run continues from the exact weights.
    if (format.lossy()) writer.add_f32(kParametersTensor, {n}, parameters.data());
  }
  OptimizerMoments own;
  if (!moments) {
    own = {model.adam_m_to_host(), model.adam_v_to_host()};
    moments = &own;
  }
  require(moments->m.size() == static_cast<size_t>(n) && moments->v.size() == static_cast<size_t>(n),
          "optimizer moments of {} and {} values for {} parameters", moments->m.size(),
          moments->v.size(), n);
  writer.add_f32("adam_m", {n}, moments->m.data());
  writer.add_f32("adam_v", {n}, moments->v.data());
  writer.set_metadata("step", std::to_string(state.step));
  for (const auto& [key, value] : state.values) writer.set_metadata(key, value);
  writer.write_in_place(commit.stage(kStateFile));
  commit.commit();
}

TrainingState load_training_state(Model& model, const std::string& directory) {
  recover_file_set(directory);
  std::string path = (fs::path(directory) / kStateFile).string();
  SafetensorsFile file = SafetensorsFile::open(path);
  const size_t n = model.layout().total();
  for (const char* name : {"adam_m", "adam_v"}) {
    const TensorInfo* info = file.find(name);
    if (!info) fail("{}: missing tensor '{}'", path, name);
    if (info->numel() != static_cast<int64_t>(n)) {
      fail("{}: tensor '{}' has {} values, the model has {} parameters", path, name, info->numel(), n);
    }
  }
  model.adam_state_from_host(file.read_f32("adam_m"), file.read_f32("adam_v"));
  if (const TensorInfo* parameters = file.find(kParametersTensor)) {
    if (parameters->dtype != DType::kF32 || parameters->numel() != static_cast<int64_t>(n)) {
      fail("{}: tensor '{}' is {} with {} values, the model has {} fp32 parameters", path, kParametersTensor,
           dtype_name(parameters->dtype), parameters->numel(), n);
    }
    model.parameters_from_host(file.read_f32(kParametersTensor));
  }
  TrainingState state;
  state.values = file.metadata();
  auto it = state.values.find("step");
  if (it == state.values.end()) fail("{}: missing metadata 'step'", path);
  try {
    state.step = std::stoi(it->second);
  } catch (const std::exception&) {
    fail("{}: metadata 'step' = '{}' is not a number", path, it->second);
  }
  if (state.step < 0) fail("{}: metadata 'step' = {} is negative", path, state.step);
  state.values.erase("step");
  return state;
}

std::map<std::string, std::string> read_training_state_values(const std::string& directory) {
  recover_file_set(directory);
  return SafetensorsFile::open((fs::path(directory) / kStateFile).string()).metadata();
}

}  // namespace switchyard::model
