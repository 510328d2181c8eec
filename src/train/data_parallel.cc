#include "train/data_parallel.h"

#include <chrono>
#include <utility>

#include "core/error.h"

namespace switchyard::train {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The pieces of `span` on every rank (piece_of's split, which owned_pieces uses too).
std::vector<int64_t> piece_counts(const model::FloatRange& span, int ranks) {
  return dist::even_counts(static_cast<int64_t>(span.size()), ranks);
}

}  // namespace

DataParallelSync::DataParallelSync(model::Model& model, dist::Communicator& comm,
                                   size_t bucket_floats)
    : model_(model), comm_(comm), buckets_(plan_gradient_buckets(model.layout(), bucket_floats)) {
  model_.set_step_sync(this);
  thread_ = std::thread([this] { send_buckets(); });
}

DataParallelSync::~DataParallelSync() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
  model_.set_step_sync(nullptr);
}

std::vector<model::FloatRange> DataParallelSync::owned_ranges() const {
  return owned_pieces(buckets_, comm_.rank(), comm_.size());
}

void DataParallelSync::layer_gradients_done(int layer) {
  if (!last_micro_batch_) return;
  // Queue every bucket whose layers are all done: buckets run from the last layer down, and the
  // one outside the layers waits for the end of the pass (-1).
  std::vector<size_t> ready;
  while (next_bucket_ < buckets_.size()) {
    const GradientBucket& b = buckets_[next_bucket_];
    const bool done = layer < 0 || (b.first_layer >= 0 && b.first_layer >= layer);
    if (!done) break;
    ready.push_back(next_bucket_++);
  }
  if (ready.empty()) return;
  model_.backend().synchronize();  // the gradients must be written before another thread reads them
  {
    std::lock_guard lock(mutex_);
    for (size_t b : ready) queue_.push_back(b);
    in_flight_ += ready.size();
  }
  changed_.notify_all();
}

void DataParallelSync::gradients_reduced() {
  require(next_bucket_ == buckets_.size(),
          "data-parallel step: the backward pass reported {} of {} gradient buckets", next_bucket_,
          buckets_.size());
  const auto waiting = Clock::now();
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return in_flight_ == 0; });
  timing_ = {.reduce_ms = std::exchange(reduce_ms_, 0.0), .waited_ms = ms_since(waiting)};
  next_bucket_ = 0;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void DataParallelSync::sum_statistics(const Tensor& statistics) {
  comm_.host().all_reduce_sum(statistics);
}

DataParallelSync::StepTiming DataParallelSync::last_step_timing() const { return timing_; }

void DataParallelSync::parameters_updated() {
  const auto gathering = Clock::now();
  model_.backend().synchronize();
  for (const GradientBucket& bucket : buckets_) {
    for (const model::FloatRange& span : bucket.spans) {
      for (const Tensor& view : model_.parameter_views(span)) {
        comm_.all_gather(view, piece_counts(span, comm_.size()));
      }
    }
  }
  timing_.gather_ms = ms_since(gathering);
}

std::vector<float> DataParallelSync::gather_pieces(std::vector<float> whole) const {
  for (const GradientBucket& bucket : buckets_) {
    for (const model::FloatRange& span : bucket.spans) {
      comm_.host().all_gather(Tensor::dense(whole.data() + span.begin, DType::kF32,
                                     {static_cast<int64_t>(span.size())}),
                       piece_counts(span, comm_.size()));
    }
  }
  return whole;
}

void DataParallelSync::reduce_bucket(const GradientBucket& bucket) {
  for (const model::FloatRange& span : bucket.spans) {
    comm_.reduce_scatter_sum(model_.gradient_range(span), piece_counts(span, comm_.size()));
  }
}

void DataParallelSync::send_buckets() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const size_t b = queue_.front();
    queue_.pop_front();
    const bool failed_before = error_ != nullptr;  // the rest of the step is abandoned
    lock.unlock();
    std::exception_ptr error;
    const auto reducing = Clock::now();
    try {
      if (!failed_before) reduce_bucket(buckets_[b]);
    } catch (...) {
      error = std::current_exception();
    }
    const double ms = ms_since(reducing);
    lock.lock();
    reduce_ms_ += ms;
    if (error && !error_) error_ = error;
    in_flight_ -= 1;
    changed_.notify_all();
  }
}

}  // namespace switchyard::train
