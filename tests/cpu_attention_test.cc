// The CPU attention kernels beyond GPT-2: grouped-query heads, sliding windows and sinks, forward
// against a direct computation of the definition and backward against central finite differences
// (double); and the paged form against the windowed one on the same keys and values.
#include "backend/cpu/attention_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"

namespace switchyard::backend::cpu {
namespace {

using Vec = std::vector<double>;

Vec random_vec(size_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vec v(n);
  for (double& x : v) x = scale * (2.0 * rng.uniform() - 1.0);
  return v;
}

double max_abs_diff(const Vec& a, const Vec& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// q [B*T, H, hd], k and v [B*T, KV, hd] in one packed row each: q | k | v.
struct Case {
  int B = 2, T = 7, H = 6, KV = 2, hd = 4, window = 0;
  bool sinks = false;
  int row() const { return (H + 2 * KV) * hd; }
  AttentionGeometry geometry() const {
    AttentionGeometry g;
    g.batch = B;
    g.seq = T;
    g.heads = H;
    g.kv_heads = KV;
    g.head_dim = hd;
    g.window = window;
    g.ldq = g.ldk = g.ldv = row();
    g.ldo = static_cast<int64_t>(H) * hd;
    return g;
  }
};

// The definition, element by element: softmax over the allowed keys (and the sink) of scaled dot
// products, times the values.
Vec direct_attention(const Case& c, const Vec& qkv, const Vec& sinks) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.hd));
  Vec out(static_cast<size_t>(c.B) * c.T * c.H * c.hd, 0.0);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.H; ++h)
      for (int t = 0; t < c.T; ++t) {
        const int kvh = h / (c.H / c.KV);
        const int lo = c.window > 0 ? std::max(0, t - c.window + 1) : 0;
        auto q = [&](int d) { return qkv[(b * c.T + t) * c.row() + h * c.hd + d]; };
        auto k = [&](int s, int d) { return qkv[(b * c.T + s) * c.row() + (c.H + kvh) * c.hd + d]; };
        auto v = [&](int s, int d) {
          return qkv[(b * c.T + s) * c.row() + (c.H + c.KV + kvh) * c.hd + d];
        };
        std::vector<double> e(t + 1, 0.0);
        double denominator = c.sinks ? std::exp(sinks[h]) : 0.0;
        for (int s = lo; s <= t; ++s) {
          double dot = 0;
          for (int d = 0; d < c.hd; ++d) dot += q(d) * k(s, d);
          e[s] = std::exp(dot * scale);
          denominator += e[s];
        }
        for (int d = 0; d < c.hd; ++d) {
          double acc = 0;
          for (int s = lo; s <= t; ++s) acc += e[s] / denominator * v(s, d);
          out[((b * c.T + t) * c.H + h) * c.hd + d] = acc;
        }
      }
  return out;
}

void run_forward(const Case& c, const Vec& qkv, const Vec& sinks, Vec& out, Vec& att) {
  std::vector<float> sinks_f(sinks.begin(), sinks.end());
  out.assign(static_cast<size_t>(c.B) * c.T * c.H * c.hd, 0.0);
  att.assign(static_cast<size_t>(c.B) * c.H * c.T * c.T, 0.0);
  attention_forward(out.data(), att.data(), qkv.data(), qkv.data() + c.H * c.hd,
                    qkv.data() + (c.H + c.KV) * c.hd, c.sinks ? sinks_f.data() : nullptr,
                    c.geometry(), 1.0 / std::sqrt(static_cast<double>(c.hd)));
}

class AttentionForms : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(AttentionForms, ForwardMatchesTheDefinitionAndBackwardMatchesFiniteDifferences) {
  Case c;
  c.KV = std::get<0>(GetParam());
  c.window = std::get<1>(GetParam());
  c.sinks = std::get<2>(GetParam());
  Vec qkv = random_vec(static_cast<size_t>(c.B) * c.T * c.row(), 11);
  // Sinks exactly representable in float, so the double reference sees the kernel's values.
  Vec sinks = {0.5, -1.0, 0.25, 2.0, -0.75, 1.5};
  Vec out, att;
  run_forward(c, qkv, sinks, out, att);
  EXPECT_LT(max_abs_diff(out, direct_attention(c, qkv, sinks)), 1e-12);

  // Loss = sum(out * w); its gradient by the kernel against central differences.
  const Vec w = random_vec(out.size(), 12);
  auto loss = [&] {
    Vec o, a;
    run_forward(c, qkv, sinks, o, a);
    return std::inner_product(o.begin(), o.end(), w.begin(), 0.0);
  };
  Vec dqkv(qkv.size(), 0.0), scratch(att.size(), 0.0);
  std::vector<float> dsinks(c.H, 0.0f), sinks_f(sinks.begin(), sinks.end());
  attention_backward(dqkv.data(), dqkv.data() + c.H * c.hd, dqkv.data() + (c.H + c.KV) * c.hd,
                     c.sinks ? dsinks.data() : nullptr, scratch.data(), w.data(), att.data(),
                     qkv.data(), qkv.data() + c.H * c.hd, qkv.data() + (c.H + c.KV) * c.hd,
                     c.sinks ? sinks_f.data() : nullptr, c.geometry(),
                     1.0 / std::sqrt(static_cast<double>(c.hd)));
  for (size_t i = 0; i < qkv.size(); i += 3) {  // every third element keeps the test quick
    const double saved = qkv[i], h = 1e-6;
    qkv[i] = saved + h;
    const double up = loss();
    qkv[i] = saved - h;
    const double down = loss();
    qkv[i] = saved;
    EXPECT_NEAR(dqkv[i], (up - down) / (2 * h), 1e-7) << "element " << i;
  }
  if (c.sinks) {
    for (int hh = 0; hh < c.H; ++hh) {
      // The kernel reads sinks as floats: a power-of-two step keeps sink +- h exact in float.
      const double saved = sinks[hh], h = 1.0 / 1024;
      sinks[hh] = saved + h;
      const double up = loss();
      sinks[hh] = saved - h;
      const double down = loss();
      sinks[hh] = saved;
      // The step's truncation error (h^2 times the third derivative over 6) is about 1e-6 here;
      // dsinks itself is fp32.
      EXPECT_NEAR(dsinks[hh], (up - down) / (2 * h), 1e-5) << "sink " << hh;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, AttentionForms,
                         ::testing::Values(std::make_tuple(6, 0, false),  // multi-head
                                           std::make_tuple(2, 0, false),  // grouped-query
                                           std::make_tuple(2, 3, false),  // sliding window
                                           std::make_tuple(3, 4, true),   // window and sinks
                                           std::make_tuple(1, 0, true)));

// The paged form over keys and values scattered in cache blocks gives what the windowed form
// gives, for sequences that arrive whole and sequences that arrive in chunks.
TEST(PagedAttention, EqualsWindowedAttentionOverTheSameKeys) {
  Case c;
  c.B = 3;
  c.T = 19;
  c.KV = 2;
  c.window = 6;
  c.sinks = true;
  const int bs = 4, blocks_per_seq = (c.T + bs - 1) / bs, blocks = c.B * blocks_per_seq + 3;
  const Vec qkv = random_vec(static_cast<size_t>(c.B) * c.T * c.row(), 21);
  const Vec sinks = {0.5, -1.0, 0.25, 2.0, -0.75, 1.5};
  Vec want, att;
  run_forward(c, qkv, sinks, want, att);
  std::vector<float> sinks_f(sinks.begin(), sinks.end());

  // Block tables that interleave the sequences' blocks in the pool (block 0 stays unused).
  std::vector<int32_t> tables(static_cast<size_t>(c.B) * blocks_per_seq);
  for (int s = 0; s < c.B; ++s)
    for (int j = 0; j < blocks_per_seq; ++j) tables[s * blocks_per_seq + j] = 1 + j * c.B + s;
  const size_t cache_row = static_cast<size_t>(c.KV) * c.hd;
  Vec k_cache(blocks * bs * cache_row, std::nan("")), v_cache(k_cache.size(), std::nan(""));

  // Sequence s's rows arrive in chunks of `chunk[s]` rows, every sequence in every pass.
  const int chunk[] = {19, 5, 1};
  Vec got(want.size(), 0.0);
  int done[3] = {0, 0, 0};
  while (done[0] < c.T || done[1] < c.T || done[2] < c.T) {
    std::vector<int32_t> starts = {0}, contexts, slots;
    std::vector<int> seq_rows;
    Vec q, k, v;
    for (int s = 0; s < c.B; ++s) {
      const int rows = std::min(chunk[s], c.T - done[s]);
      for (int i = 0; i < rows; ++i) {
        const int t = done[s] + i;
        const double* row = qkv.data() + static_cast<size_t>(s * c.T + t) * c.row();
        q.insert(q.end(), row, row + c.H * c.hd);
        k.insert(k.end(), row + c.H * c.hd, row + (c.H + c.KV) * c.hd);
        v.insert(v.end(), row + (c.H + c.KV) * c.hd, row + c.row());
        slots.push_back(tables[s * blocks_per_seq + t / bs] * bs + t % bs);
      }
      starts.push_back(starts.back() + rows);
      contexts.push_back(done[s] + rows);
      seq_rows.push_back(rows);
    }
    const int N = starts.back();
    kv_cache_write(k_cache.data(), v_cache.data(), k.data(), c.KV * c.hd, v.data(), c.KV * c.hd,
                   slots.data(), N, c.KV, c.hd);
    Vec out(static_cast<size_t>(N) * c.H * c.hd, 0.0);
    PagedGeometry g;
    g.heads = c.H;
    g.kv_heads = c.KV;
    g.head_dim = c.hd;
    g.window = c.window;
    g.block_size = bs;
    g.sequences = c.B;
    g.max_blocks = blocks_per_seq;
    g.ldq = static_cast<int64_t>(c.H) * c.hd;
    g.ldo = g.ldq;
    paged_attention(out.data(), q.data(), k_cache.data(), v_cache.data(), tables.data(),
                    starts.data(), contexts.data(), sinks_f.data(), g,
                    1.0 / std::sqrt(static_cast<double>(c.hd)));
    for (int s = 0; s < c.B; ++s) {
      for (int i = 0; i < seq_rows[s]; ++i) {
        const int t = done[s] + i;
        std::copy(out.begin() + (starts[s] + i) * g.ldq, out.begin() + (starts[s] + i + 1) * g.ldq,
                  got.begin() + static_cast<size_t>(s * c.T + t) * g.ldq);
      }
      done[s] += seq_rows[s];
    }
  }
  EXPECT_LT(max_abs_diff(got, want), 1e-12);
}

// fp32 (and a bf16 cache widened as it is read): a row gets the same bits whether its sequence's
// rows arrive in one pass, in chunks or one at a time (decoding), whatever tile of rows and group
// of cache chunks the kernel computes it in. Head sizes with and without a whole number of
// vectors, blocks of the kernel's chunk and smaller ones, a window, sinks and grouped heads.
template <typename Cached>
void expect_the_same_bits_whatever_the_chunk(int hd, int bs, int window) {
  const int T = 83, H = 4, KV = 2, blocks_per_seq = (T + bs - 1) / bs;
  const size_t q_row = static_cast<size_t>(H) * hd, kv_row = static_cast<size_t>(KV) * hd;
  Rng rng(31);
  std::vector<float> q(T * q_row), k(T * kv_row), v(T * kv_row);
  for (float& x : q) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
  for (float& x : k) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
  for (float& x : v) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
  std::vector<Cached> k_cache(static_cast<size_t>(blocks_per_seq + 2) * bs * kv_row);
  std::vector<Cached> v_cache(k_cache.size());
  std::vector<int32_t> table(blocks_per_seq);
  for (int j = 0; j < blocks_per_seq; ++j) table[j] = blocks_per_seq + 1 - j;  // reversed
  for (int t = 0; t < T; ++t) {
    const size_t slot = static_cast<size_t>(table[t / bs]) * bs + t % bs;
    for (size_t i = 0; i < kv_row; ++i) {
      if constexpr (std::is_same_v<Cached, float>) {
        k_cache[slot * kv_row + i] = k[t * kv_row + i];
        v_cache[slot * kv_row + i] = v[t * kv_row + i];
      } else {
        k_cache[slot * kv_row + i] = narrow_to_bf16_bits(k[t * kv_row + i]);
        v_cache[slot * kv_row + i] = narrow_to_bf16_bits(v[t * kv_row + i]);
      }
    }
  }
  const float sinks[H] = {0.5f, -1.0f, 0.25f, 2.0f};
  auto run_in_chunks = [&](int chunk) {
    std::vector<float> out(T * q_row, 0.0f);
    for (int done = 0; done < T; done += chunk) {
      const int rows = std::min(chunk, T - done);
      const int32_t starts[] = {0, rows}, context[] = {done + rows};
      const PagedGeometry g{.heads = H, .kv_heads = KV, .head_dim = hd, .window = window,
                            .block_size = bs, .sequences = 1, .max_blocks = blocks_per_seq,
                            .ldq = static_cast<int64_t>(q_row), .ldo = static_cast<int64_t>(q_row)};
      paged_attention<float, Cached>(out.data() + done * q_row, q.data() + done * q_row,
                                     k_cache.data(), v_cache.data(), table.data(), starts,
                                     context, sinks, g, 0.125f);
    }
    return out;
  };
  const std::vector<float> one_pass = run_in_chunks(T);
  for (int chunk : {1, 5, 16, 17}) EXPECT_EQ(run_in_chunks(chunk), one_pass) << "chunks of " << chunk;
}

TEST(PagedAttention, ARowGetsTheSameBitsWhateverItsChunk) {
  for (int hd : {64, 48, 24}) {
    for (int bs : {16, 4}) {
      for (int window : {0, 37}) {
        SCOPED_TRACE(testing::Message() << "head_dim " << hd << ", blocks of " << bs
                                        << ", window " << window);
        expect_the_same_bits_whatever_the_chunk<float>(hd, bs, window);
        expect_the_same_bits_whatever_the_chunk<uint16_t>(hd, bs, window);
      }
    }
  }
}

}  // namespace
}  // namespace switchyard::backend::cpu
