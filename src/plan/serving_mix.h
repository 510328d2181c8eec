// The requests a serving plan is sized for: one or several classes of (prompt tokens, output
// tokens), each with its share of the requests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace switchyard::plan {

struct RequestClass {
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double share = 1;  // of the requests; the mix's shares sum to 1
};

class RequestMix {
 public:
  // Throws Error for an empty mix, non-positive lengths or shares; shares are normalised.
  explicit RequestMix(std::vector<RequestClass> classes);
  // "P:O:share,P:O:share,..." (e.g. "1024:256:0.7,4096:512:0.3"). Throws Error naming the part.
  static RequestMix parse(const std::string& spec);

  const std::vector<RequestClass>& classes() const { return classes_; }
  // Output tokens per request, averaged over requests.
  double mean_output() const;
  // Tokens a sequence in a decode slot holds on average: P + O/2 averaged over slots, where a
  // class holds slots in proportion to share x output tokens (long answers stay longer).
  double decode_context() const;
  // The longest request, P + O.
  int64_t longest() const;
  // "1024 in / 256 out", or "70% 1024/256, 30% 4096/512".
  std::string describe() const;

 private:
  std::vector<RequestClass> classes_;
};

}  // namespace switchyard::plan
