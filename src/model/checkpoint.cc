#include "model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/file_set_commit.h"
#include "model/safetensors.h"

namespace switchyard::model {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kStateFile = "training_state.safetensors";
constexpr const char* kPrefix = "transformer.";

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

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) fail("cannot write {}", path);
}

// config.json and model.safetensors, staged in `commit`.
void stage_model(const Model& model, FileSetCommit& commit, const nlohmann::json& info) {
  nlohmann::json config = config_to_json(model.config());
  if (!info.empty()) config["switchyard"] = info;
  write_text_file(commit.stage(kConfigFile), config.dump(2) + "\n");

  const ParameterLayout& layout = model.layout();
  std::vector<float> values = model.parameters_to_host();
  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  std::vector<float> transposed;
  for (const ParameterTensor& t : layout.tensors()) {
    const float* data = values.data() + t.offset;
    std::vector<int64_t> shape = t.shape;
    if (t.hf_transposed) {
      const int64_t rows_out = shape[0], cols_in = shape[1];
      transposed.resize(t.numel);
      for (int64_t o = 0; o < rows_out; ++o)
        for (int64_t i = 0; i < cols_in; ++i) transposed[i * rows_out + o] = data[o * cols_in + i];
      data = transposed.data();
      std::swap(shape[0], shape[1]);
    }
    writer.add_f32(kPrefix + t.name, shape, data);
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

// SafetensorsFile and SafetensorsSet alike: find, read_f32 and source.
template <typename Tensors>
std::vector<float> read_hf_tensors_from(const ParameterLayout& layout, const Tensors& file,
                                        const std::string& prefix) {
  std::vector<float> values(layout.total(), 0.0f);
  for (const ParameterTensor& t : layout.tensors()) {
    std::string name = prefix + t.name;
    const TensorInfo* info = file.find(name);
    if (!info && prefix.empty()) info = file.find(kPrefix + t.name);
    if (!info) fail("{}: missing tensor '{}'", file.source(), name);
    std::vector<int64_t> expected = t.shape;
    if (t.hf_transposed) std::swap(expected[0], expected[1]);
    if (info->shape != expected) {
      fail("{}: tensor '{}' has shape {}, but the model config implies {}", file.source(), info->name,
           shape_string(info->shape), shape_string(expected));
    }
    std::vector<float> data = file.read_f32(info->name);
    float* out = values.data() + t.offset;
    if (t.hf_transposed) {
      // File [in, out] -> memory [out, in].
      const int64_t rows_in = expected[0], cols_out = expected[1];
      for (int64_t i = 0; i < rows_in; ++i)
        for (int64_t o = 0; o < cols_out; ++o) out[o * rows_in + i] = data[i * cols_out + o];
    } else {
      std::copy(data.begin(), data.end(), out);
    }
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

void load_weights(Model& model, const std::string& directory) {
  recover_file_set(directory);
  const SafetensorsSet file = SafetensorsSet::open(directory);
  const ParameterLayout& layout = model.layout();
  // Every tensor in the files must be one the model knows (or a buffer Hugging Face adds).
  std::set<std::string> seen;
  for (const TensorInfo* info : file.tensors()) {
    std::string name = info->name.starts_with(kPrefix) ? info->name.substr(12) : info->name;
    if (is_ignorable(name)) continue;
    if (!layout.find(name)) {
      fail("{}: unexpected tensor '{}' (not part of a GPT-2 model)", file.source(), info->name);
    }
    if (!seen.insert(name).second) fail("{}: tensor '{}' appears twice", file.source(), name);
  }
  model.parameters_from_host(read_hf_tensors(layout, file, ""));
}

void save_model(const Model& model, const std::string& directory,
                const std::map<std::string, std::string>& info) {
  FileSetCommit commit(directory);
  stage_model(model, commit, info.empty() ? nlohmann::json::object() : nlohmann::json(info));
  commit.commit();
}

void save_training_checkpoint(const Model& model, const std::string& directory, const nlohmann::json& info,
                              const TrainingState& state) {
  FileSetCommit commit(directory);
  stage_model(model, commit, info);
  SafetensorsWriter writer;
  const int64_t n = static_cast<int64_t>(model.layout().total());
  std::vector<float> m = model.adam_m_to_host(), v = model.adam_v_to_host();
  writer.add_f32("adam_m", {n}, m.data());
  writer.add_f32("adam_v", {n}, v.data());
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
