#include "neuron/dependency_tracker.h"

#include <algorithm>

namespace switchyard::neuron {

void DependencyTracker::Records::add(const Record& r) {
  list.push_back(r);
  latest = std::max(latest, r.done);
  if (r.write) latest_write = std::max(latest_write, r.done);
}

void DependencyTracker::Records::clear() {
  list.clear();
  latest = 0.0;
  latest_write = 0.0;
}

double DependencyTracker::on_allocate(int32_t id, Memory memory, const Region& whole) {
  if (static_cast<size_t>(id) >= records_.size()) records_.resize(id + 1);
  records_[id].clear();
  double barrier = 0.0;
  for (const Retired& r : retired_) {
    if (r.memory == memory && r.region.overlaps(whole)) barrier = std::max(barrier, r.done);
  }
  // Retired ranges this allocation covers are now represented by its own seed record.
  std::erase_if(retired_, [&](const Retired& r) {
    return r.memory == memory && whole.contains(r.region) && r.done <= barrier;
  });
  if (barrier > 0.0) records_[id].add(Record{whole, barrier, true});
  return barrier;
}

void DependencyTracker::on_release(int32_t id, Memory memory, const Region& whole) {
  const double done = records_[id].latest;
  records_[id].clear();
  records_[id].list.shrink_to_fit();
  if (done <= 0.0) return;
  // Kernels allocate the same tiles at the same offsets again and again: keep one barrier per
  // region.
  for (Retired& r : retired_) {
    if (r.memory == memory && r.region.contains(whole) && whole.contains(r.region)) {
      r.done = std::max(r.done, done);
      return;
    }
  }
  retired_.push_back(Retired{memory, whole, done});
}

double DependencyTracker::ready_time(const Accesses& accesses) const {
  double ready = 0.0;
  for (int i = 0; i < accesses.num_reads; ++i) {
    const Region& a = accesses.reads[i];
    const Records& records = records_[a.allocation];
    if (records.latest_write <= ready) continue;
    for (const Record& r : records.list) {
      if (r.write && r.done > ready && r.region.overlaps(a)) ready = r.done;  // RAW
    }
  }
  for (int i = 0; i < accesses.num_writes; ++i) {
    const Region& a = accesses.writes[i];
    const Records& records = records_[a.allocation];
    if (records.latest <= ready) continue;
    for (const Record& r : records.list) {
      if (r.done > ready && r.region.overlaps(a)) ready = r.done;  // WAR and WAW
    }
  }
  return ready;
}

void DependencyTracker::commit(const Accesses& accesses, double read_done, double write_done) {
  for (int i = 0; i < accesses.num_writes; ++i) {
    const Region& a = accesses.writes[i];
    Records& records = records_[a.allocation];
    // The new write waited for every record it overlaps; those it covers are redundant now.
    std::erase_if(records.list, [&](const Record& r) { return a.contains(r.region); });
    records.add(Record{a, write_done, true});
  }
  for (int i = 0; i < accesses.num_reads; ++i) {
    const Region& a = accesses.reads[i];
    Records& records = records_[a.allocation];
    // The newest record, if a read of the same region or of one this read covers, finishing no
    // later, is superseded by this one (a later write waits for this read anyway).
    if (!records.list.empty()) {
      Record& last = records.list.back();
      if (!last.write && a.contains(last.region) && last.region.contains(a)) {
        last.done = std::max(last.done, read_done);
        records.latest = std::max(records.latest, read_done);
        continue;
      }
      if (!last.write && a.contains(last.region) && last.done <= read_done) {
        records.list.pop_back();
      }
    }
    records.add(Record{a, read_done, false});
  }
}

void DependencyTracker::clear() {
  for (Records& records : records_) records.clear();
  retired_.clear();
}

}  // namespace switchyard::neuron
