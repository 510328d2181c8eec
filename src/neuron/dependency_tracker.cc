#include "neuron/dependency_tracker.h"

#include <algorithm>

namespace switchyard::neuron {

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
  if (barrier > 0.0) records_[id].push_back(Record{whole, barrier, true});
  return barrier;
}

void DependencyTracker::on_release(int32_t id, Memory memory, const Region& whole) {
  double done = 0.0;
  for (const Record& r : records_[id]) done = std::max(done, r.done);
  records_[id].clear();
  records_[id].shrink_to_fit();
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
    for (const Record& r : records_[a.allocation]) {
      if (r.write && r.done > ready && r.region.overlaps(a)) ready = r.done;  // RAW
    }
  }
  for (int i = 0; i < accesses.num_writes; ++i) {
    const Region& a = accesses.writes[i];
    for (const Record& r : records_[a.allocation]) {
      if (r.done > ready && r.region.overlaps(a)) ready = r.done;  // WAR and WAW
    }
  }
  return ready;
}

void DependencyTracker::commit(const Accesses& accesses, double read_done, double write_done) {
  for (int i = 0; i < accesses.num_writes; ++i) {
    const Region& a = accesses.writes[i];
    auto& list = records_[a.allocation];
    // The new write waited for every record it overlaps; those it covers are redundant now.
    std::erase_if(list, [&](const Record& r) { return a.contains(r.region); });
    list.push_back(Record{a, write_done, true});
  }
  for (int i = 0; i < accesses.num_reads; ++i) {
    const Region& a = accesses.reads[i];
    auto& list = records_[a.allocation];
    bool covered = false;
    for (Record& r : list) {
      // An identical read record that finishes no later is superseded by this one.
      if (!r.write && r.region.contains(a) && a.contains(r.region)) {
        r.done = std::max(r.done, read_done);
        covered = true;
        break;
      }
    }
    if (!covered) {
      std::erase_if(list, [&](const Record& r) {
        return !r.write && a.contains(r.region) && r.done <= read_done;
      });
      list.push_back(Record{a, read_done, false});
    }
  }
}

void DependencyTracker::clear() {
  for (std::vector<Record>& records : records_) records.clear();
  retired_.clear();
}

}  // namespace switchyard::neuron
