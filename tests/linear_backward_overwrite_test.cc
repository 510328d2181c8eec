// ops::LinearBackward's overwrite flags on every backend that runs here: a gradient set over a
// buffer full of NaN holds exactly what accumulating onto zeros gives, the gradients not flagged
// keep adding to what they hold, and an empty sum writes zeros. Also model/gradient_ledger.h, which
// decides when the model may set a parameter's gradient.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "device_tensors.h"
#include "expect_error.h"
#include "random_data.h"
#include "model/gradient_ledger.h"

namespace switchyard {
namespace {

namespace ops = backend::ops;

// Bit-for-bit equality (NaN in either fails).
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& expected,
                      const char* what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << " [" << i << "]";
    ASSERT_EQ(std::memcmp(&got[i], &expected[i], sizeof(float)), 0)
        << what << " [" << i << "]: " << got[i] << " against " << expected[i];
  }
}

class LinearBackwardOverwrite : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string why = unavailable_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << GetParam() << ": " << why;
    backend_ = backend::create_backend(GetParam());
  }
  std::unique_ptr<Backend> backend_;
};

TEST_P(LinearBackwardOverwrite, SetsWhatAccumulatingOntoZerosGives) {
  Backend& be = *backend_;
  const DType act = be.precision().activations, weights = be.precision().matmul_weights;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const auto [N, C, OC] : {std::array{37, 72, 40}, std::array{0, 16, 8}}) {
    const size_t n = size_t(N) * C, w = size_t(OC) * C;
    DeviceTensor dout(be, act, {N, OC}, normal_floats(size_t(N) * OC, 1));
    DeviceTensor inp(be, act, {N, C}, normal_floats(n, 2));
    DeviceTensor weight(be, weights, {OC, C}, normal_floats(w, 3, 0.1f));
    for (const auto& [set_dinp, set_params] : {std::pair{true, false}, std::pair{false, true},
                                              std::pair{true, true}}) {
      SCOPED_TRACE(testing::Message() << "N=" << N << " set dinp " << set_dinp << ", params "
                                      << set_params);
      // What each gradient holds before: NaN where it is set, a running sum where it is added to.
      const std::vector<float> dinp_before = normal_floats(n, 4), dw_before = normal_floats(w, 5),
                               db_before = normal_floats(OC, 6);
      auto start = [&](const std::vector<float>& held, bool set) {
        return set ? std::vector<float>(held.size(), nan) : held;
      };
      DeviceTensor dinp(be, act, {N, C}, start(dinp_before, set_dinp));
      DeviceTensor dw(be, DType::kF32, {OC, C}, start(dw_before, set_params));
      DeviceTensor db(be, DType::kF32, {OC}, start(db_before, set_params));
      be.run(ops::LinearBackward{.dinp = dinp.tensor(), .dweight = dw.tensor(),
                                 .dbias = db.tensor(), .dout = dout.tensor(), .inp = inp.tensor(),
                                 .weight = weight.tensor(), .overwrite_dinp = set_dinp,
                                 .overwrite_param_grads = set_params});
      // The same products added onto zeros where the others set, onto the same sums elsewhere.
      auto zeros_or = [](const std::vector<float>& held, bool set) {
        return set ? std::vector<float>(held.size(), 0.0f) : held;
      };
      DeviceTensor dinp_ref(be, act, {N, C}, zeros_or(dinp_before, set_dinp));
      DeviceTensor dw_ref(be, DType::kF32, {OC, C}, zeros_or(dw_before, set_params));
      DeviceTensor db_ref(be, DType::kF32, {OC}, zeros_or(db_before, set_params));
      be.run(ops::LinearBackward{.dinp = dinp_ref.tensor(), .dweight = dw_ref.tensor(),
                                 .dbias = db_ref.tensor(), .dout = dout.tensor(),
                                 .inp = inp.tensor(), .weight = weight.tensor()});
      expect_same_bits(dinp.read(), dinp_ref.read(), "dinp");
      expect_same_bits(dw.read(), dw_ref.read(), "dweight");
      expect_same_bits(db.read(), db_ref.read(), "dbias");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, LinearBackwardOverwrite,
                         ::testing::Values("cpu", "cpu-bf16", "trn2-sim", "trn2-sim-fp32", "cuda",
                                           "cuda-fp32"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

// The ledger over a 16-float buffer: claims of untouched ranges are fresh; a claim overlapping
// earlier ones zeroes only the parts still owed; settling a part zeroes what it still owes;
// settle() zeroes the rest and closes.
TEST(GradientLedger, ZeroesOnlyWhatNoClaimCovered) {
  auto be = backend::create_backend("cpu");
  DeviceTensor grads(*be, DType::kF32, {16}, std::vector<float>(16, 7.0f));
  float* base = static_cast<float*>(grads.tensor().data);
  auto view = [&](int begin, int count) { return Tensor::dense(base + begin, DType::kF32, {count}); };
  model::GradientLedger ledger;
  EXPECT_FALSE(ledger.claim(view(0, 4)));  // closed: nothing is owed
  ledger.open(*be, base, 16 * sizeof(float));
  EXPECT_TRUE(ledger.claim(view(2, 2)));   // [2, 4)
  EXPECT_TRUE(ledger.claim(view(6, 2)));   // [6, 8)
  base[2] = base[3] = base[6] = base[7] = 1.0f;  // what the ops that claimed them wrote
  // [0, 10) overlaps both: its owed parts [0, 2), [4, 6) and [8, 10) become zeros.
  EXPECT_FALSE(ledger.claim(view(0, 10)));
  EXPECT_EQ(grads.read(), (std::vector<float>{0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 7, 7, 7, 7, 7, 7}));
  EXPECT_FALSE(ledger.claim(view(1, 2)));  // inside a claimed range: nothing to zero
  EXPECT_TRUE(ledger.claim(view(12, 2)));  // [12, 14)
  base[12] = base[13] = 2.0f;
  // A part complete before the step ends (a layer's, for replicas): [11, 13) becomes [0 owed, 2].
  ledger.settle(11 * sizeof(float), 2 * sizeof(float));
  EXPECT_EQ(grads.read()[11], 0.0f);
  EXPECT_EQ(grads.read()[10], 7.0f);  // outside the settled part: still owed
  EXPECT_FALSE(ledger.claim(view(11, 1)));  // settled parts count as written
  ledger.settle();
  EXPECT_FALSE(ledger.is_open());
  EXPECT_EQ(grads.read(), (std::vector<float>{0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 2, 2, 0, 0}));
  ledger.open(*be, base, 16 * sizeof(float));
  expect_error([&] { ledger.claim(Tensor::dense(base + 12, DType::kF32, {8})); },  // past the end
               {"not a dense view of the model's gradients"});
}

}  // namespace
}  // namespace switchyard
