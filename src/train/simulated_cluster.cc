#include "train/simulated_cluster.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard::train {

namespace {

// Gradients and parameters travel as the model keeps them: fp32.
constexpr double kBytesPerFloat = sizeof(float);

std::string bucket_name(const GradientBucket& bucket) {
  if (bucket.first_layer < 0) return "reduce_scatter embeddings+head";
  if (bucket.first_layer == bucket.last_layer) {
    return fmt::format("reduce_scatter layer {}", bucket.first_layer);
  }
  return fmt::format("reduce_scatter layers {}-{}", bucket.first_layer, bucket.last_layer);
}

}  // namespace

SimulatedCluster::SimulatedCluster(model::Model& model, const dist::Interconnect& links, int cores,
                                   int micro_batches, size_t min_bucket_floats)
    : model_(model),
      sim_(backend::require_simulator(model.backend(), "a simulated cluster")),
      links_(links),
      layout_(dist::layout_cores(links_, cores, "--cores")),
      micro_batches_(micro_batches),
      buckets_(plan_gradient_buckets(model.layout(), min_bucket_floats)) {
  require(micro_batches >= 1, "a step needs at least one micro-batch, got {}", micro_batches);
}

std::vector<model::FloatRange> SimulatedCluster::owned_ranges() const {
  return owned_pieces(buckets_, 0, layout_.cores);
}

double SimulatedCluster::now_ns() const {
  return backend::simulation_report(model_.backend())->total_ns;
}

double SimulatedCluster::collective_ns(double bytes) const {
  return dist::reduce_scatter_seconds(links_, layout_, bytes) * 1e9;
}

void SimulatedCluster::start_reduce_scatter(size_t bucket) {
  const double start = std::max(now_ns(), links_free_ns_);
  const double ns = collective_ns(static_cast<double>(buckets_[bucket].floats()) * kBytesPerFloat);
  links_free_ns_ = start + ns;
  step_.reduce_scatter_ms += ns / 1e6;
  ++step_.buckets;
  sim_.trace_collective(bucket_name(buckets_[bucket]), start, links_free_ns_);
}

void SimulatedCluster::layer_gradients_done(int layer) {
  // Only the step's last backward pass completes gradients; the earlier ones accumulate.
  if (micro_done_ == micro_batches_ - 1) {
    for (size_t b = 0; b < buckets_.size(); ++b) {
      if (buckets_[b].first_layer == layer) start_reduce_scatter(b);
    }
  }
  if (layer < 0) ++micro_done_;
}

double SimulatedCluster::wait_until(double until_ns, const char* what) {
  const double wait = std::max(0.0, until_ns - now_ns());
  if (wait > 0) sim_.wait_for_peers(wait, what);
  return wait;
}

void SimulatedCluster::gradients_reduced() {
  require(micro_done_ == micro_batches_,
          "simulated cluster: the step ran {} forward-backward passes, not the {} it was set up "
          "for",
          micro_done_, micro_batches_);
  step_.exposed_reduce_scatter_ms = wait_until(links_free_ns_, "data_parallel.wait_reduce_scatter") / 1e6;
}

void SimulatedCluster::sum_statistics(const Tensor& statistics) {
  // Every core holds the same gradient (see the header): the cluster's squared norm is that of the
  // whole gradient, which the owned pieces' squares alone are not.
  if (!sim_.timing_only()) {
    double squares = 0;
    for (float g : model_.gradients_to_host()) squares += static_cast<double>(g) * g;
    static_cast<double*>(statistics.data)[1] = squares;
  }
  const double start = now_ns();
  const double ns = 2.0 * collective_ns(2 * sizeof(double));  // an all-reduce of two doubles
  sim_.trace_collective("all_reduce statistics", start, start + ns);
  step_.statistics_ms = wait_until(start + ns, "data_parallel.wait_statistics") / 1e6;
}

void SimulatedCluster::parameters_updated() {
  const double start = now_ns();
  const double ns = collective_ns(static_cast<double>(model_.layout().total()) * kBytesPerFloat);
  sim_.trace_collective("all_gather parameters", start, start + ns);
  step_.all_gather_ms = wait_until(start + ns, "data_parallel.wait_all_gather") / 1e6;
  last_ = step_;
  step_ = {};
  micro_done_ = 0;
  links_free_ns_ = 0;
}

}  // namespace switchyard::train
