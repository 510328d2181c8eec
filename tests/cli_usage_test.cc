// What the switchyard command says when it is used wrongly: one line on stderr naming the mistake
// (with the nearest valid name for a mistyped command or flag, at every level of subcommands), exit
// status 2 for command-line mistakes, 1 for failures while running, 0 for --help.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

struct Result {
  int exit_code = -1;
  std::string out, err;
};

class CliUsage : public TempDirTest {
 protected:
  Result run(const std::string& args) const {
    const std::string err_path = path("stderr.txt");
    const std::string command = std::string(SWITCHYARD_CLI) + " " + args + " 2>" + err_path;
    Result r;
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) return r;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) r.out.append(buffer, n);
    const int status = pclose(pipe);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream err(err_path);
    r.err.assign(std::istreambuf_iterator<char>(err), {});
    return r;
  }

  // Expects exit status `code` and exactly one line on stderr: "error: " + `message` when
  // `whole_line`, else a line that starts with "error: " and contains `message`.
  void expect_error(const std::string& args, int code, const std::string& message, bool whole_line = true) const {
    SCOPED_TRACE("switchyard " + args);
    const Result r = run(args);
    EXPECT_EQ(r.exit_code, code) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line:\n" << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    if (whole_line) {
      EXPECT_EQ(r.err, "error: " + message + "\n");
    } else {
      EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    }
  }
};

constexpr int kUsage = 2, kRuntime = 1;

TEST_F(CliUsage, MistypedCommandsGetTheNearestName) {
  expect_error("trian", kUsage, "unknown command 'trian'; did you mean 'train'?");
  expect_error("genrate --model tiny", kUsage, "unknown command 'genrate'; did you mean 'generate'?");
  expect_error("Eval", kUsage, "unknown command 'Eval'; did you mean 'eval'?");
  expect_error("gen", kUsage, "unknown command 'gen'; did you mean 'generate'?");  // the only one it begins
  expect_error("bench trian --model tiny", kUsage, "unknown command 'trian' for 'bench'; did you mean 'train'?");
  expect_error("bench generat", kUsage, "unknown command 'generat' for 'bench'; did you mean 'generate'?");
  expect_error("neuron bnch matmul", kUsage, "unknown command 'bnch' for 'neuron'; did you mean 'bench'?");
  expect_error("plan validat", kUsage, "unknown command 'validat' for 'plan'; did you mean 'validate'?");
}

TEST_F(CliUsage, CommandsFarFromAnyNameAreListed) {
  expect_error("frobnicate", kUsage,
               "unknown command 'frobnicate'; commands: devices, tokenize, prepare, train, eval, generate, "
               "chat, serve, bench, neuron, plan");
  expect_error("bench speed", kUsage,
               "unknown command 'speed' for 'bench'; commands: train, generate, prefill, serve");
}

TEST_F(CliUsage, MissingCommandsAreNamed) {
  expect_error("", kUsage,
               "no command given; commands: devices, tokenize, prepare, train, eval, generate, chat, serve, "
               "bench, neuron, plan; see 'switchyard --help'");
  expect_error("bench", kUsage, "'bench' needs a command: train, generate, prefill, serve");
  expect_error("neuron", kUsage, "'neuron' needs a command: bench");
}

TEST_F(CliUsage, MistypedFlagsGetTheNearestName) {
  // The mistyped flag is named even though --data and --out are missing too.
  expect_error("train --step 5", kUsage, "unknown flag '--step' for 'train'; did you mean '--steps'?");
  expect_error("train --model tiny --data a.txt --out o --step=5", kUsage,
               "unknown flag '--step' for 'train'; did you mean '--steps'?");
  expect_error("train --model tiny --data a.txt --out o -steps 5", kUsage,
               "unknown flag '-steps' for 'train'; did you mean '--steps'?");
  expect_error("generate --model tiny --temp 0.5", kUsage,
               "unknown flag '--temp' for 'generate'; did you mean '--temperature'?");
  expect_error("eval --mdoel tiny --data x.bin", kUsage, "unknown flag '--mdoel' for 'eval'; did you mean '--model'?");
  expect_error("bench train --model tiny --stps 3", kUsage,
               "unknown flag '--stps' for 'bench train'; did you mean '--steps'?");
  expect_error("bench generate --model tiny --tokns 3", kUsage,
               "unknown flag '--tokns' for 'bench generate'; did you mean '--tokens'?");
  expect_error("neuron bench matmul --shap 64x64x64", kUsage,
               "unknown flag '--shap' for 'neuron bench'; did you mean '--shape'?");
  expect_error("plan --modle gpt2-124m", kUsage, "unknown flag '--modle' for 'plan'; did you mean '--model'?");
  expect_error("plan validate --jsn", kUsage, "unknown flag '--jsn' for 'plan validate'; did you mean '--json'?");
}

TEST_F(CliUsage, FlagsFarFromAnyNamePointToHelp) {
  expect_error("train --model tiny --data a.txt --out o --xyzzy", kUsage,
               "unknown flag '--xyzzy' for 'train'; see 'switchyard train --help'");
  expect_error("-x", kUsage, "unknown flag '-x' for 'switchyard'; see 'switchyard --help'");
  expect_error("bench --model tiny train", kUsage,
               "unknown flag '--model' for 'bench'; it belongs after the command, as in 'switchyard bench train "
               "--model'");
}

TEST_F(CliUsage, MissingFlagsAndBadValuesAreUsageErrors) {
  expect_error("train --model tiny --data a.txt", kUsage, "--out is required; see 'switchyard train --help'");
  expect_error("train --data a.txt --out o", kUsage, "--model is required; see 'switchyard train --help'");
  expect_error("neuron bench", kUsage, "kernel is required; see 'switchyard neuron bench --help'");
  expect_error("generate --model tiny --top-k many", kUsage, "--top-k", /*whole_line=*/false);
  expect_error("generate --model tiny -n 0", kUsage, "--max-new-tokens: Value 0 not in range", false);
  expect_error("generate --model tiny --tokenizer klingon", kUsage, "--tokenizer: klingon not in", false);
  expect_error("train --model tiny --data a.txt --out o --steps", kUsage, "--steps", false);
  expect_error("generate --model tiny hello", kUsage,
               "unexpected argument 'hello' for 'generate'; see 'switchyard generate --help'");
}

TEST_F(CliUsage, FailuresWhileRunningExitOne) {
  expect_error("eval --model tiny --data " + path("missing.bin"), kRuntime, "missing.bin", false);
  expect_error("generate --model gpt9", kRuntime,
               "unknown model preset 'gpt9' (known: gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m, tiny, gpt-oss-20b, gpt-oss-120b, gpt-oss-tiny), and no "
               "checkpoint directory of that name");
  expect_error("generate --model tiny --prompt hi --top-p 1.5", kRuntime, "top-p", false);
  expect_error("generate --model " + path("no_such_dir"), kRuntime, "no_such_dir", false);
}

TEST_F(CliUsage, HelpExitsZeroAtEveryLevel) {
  for (const char* args : {"--help", "-h", "train --help", "bench --help", "bench train --help", "neuron bench --help",
                           "plan validate --help", "train --step 5 --help"}) {
    SCOPED_TRACE(args);
    const Result r = run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.out;
    EXPECT_EQ(r.err, "");
  }
}

TEST_F(CliUsage, GeneratingFromAPresetWarnsThatItIsUntrained) {
  const Result r = run("generate --model tiny --prompt hi -n 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("hi", 0), 0u) << r.out;  // the text itself is untouched
  const std::string first_line = r.err.substr(0, r.err.find('\n'));
  EXPECT_EQ(first_line,
            "warning: 'tiny' is a preset with random, untrained weights, so the text is noise; train one "
            "(switchyard train --model tiny --data TEXT --out DIR) and pass --model DIR, or pass any checkpoint "
            "directory");
}

}  // namespace
}  // namespace switchyard
