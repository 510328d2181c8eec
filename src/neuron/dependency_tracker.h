// Automatic dependencies between instructions, from the memory each one reads and writes.
//
// Every instruction declares rectangles of memory (partition range x byte range, the bounding box
// of each access pattern). A later instruction waits for earlier ones it conflicts with: after a
// write it reads (RAW), after a read it overwrites (WAR), after a write it overwrites (WAW).
// Bounding boxes are conservative: interleaved views of one tile may wait for each other.
//
// Records are kept per allocation and pruned when a later write covers them (that write already
// waited for them, so nothing after it needs them), or a later read covers the newest one. When an
// allocation is freed its latest times are kept as a "retired" barrier, so a new allocation over
// the same bytes waits for the old tile's last users.
//
// A tensor read piece by piece and never written (weights streaming from HBM) piles up read
// records no write prunes: committing a read looks at the newest record only, and an access skips
// an allocation's list when none of its records could delay it, so that neither costs time in the
// length of the list.
#pragma once

#include <cstdint>
#include <vector>

#include "neuron/view.h"

namespace switchyard::neuron {

// Partitions [p0, p1) x bytes [b0, b1). HBM uses one partition and absolute byte addresses;
// SBUF/PSUM use physical partitions and byte offsets within each partition.
struct Region {
  int32_t allocation = -1;
  int64_t p0 = 0, p1 = 0, b0 = 0, b1 = 0;
  bool overlaps(const Region& o) const { return p0 < o.p1 && o.p0 < p1 && b0 < o.b1 && o.b0 < b1; }
  bool contains(const Region& o) const {
    return p0 <= o.p0 && o.p1 <= p1 && b0 <= o.b0 && o.b1 <= b1;
  }
};

// The regions one instruction reads and writes.
struct Accesses {
  static constexpr int kMax = 6;
  Region reads[kMax];
  Region writes[kMax];
  int num_reads = 0;
  int num_writes = 0;
  void read(const Region& r) { reads[num_reads++] = r; }
  void write(const Region& r) { writes[num_writes++] = r; }
};

class DependencyTracker {
 public:
  // Registers allocation `id` over `whole` in memory `memory`; returns the time before which it
  // must not be touched (the retired barrier of earlier allocations it overlaps, or 0).
  double on_allocate(int32_t id, Memory memory, const Region& whole);
  void on_release(int32_t id, Memory memory, const Region& whole);

  // Earliest time an instruction with these accesses may start.
  double ready_time(const Accesses& accesses) const;
  // Records a scheduled instruction: its reads are finished at `read_done`, its writes visible
  // at `write_done`.
  void commit(const Accesses& accesses, double read_done, double write_done);
  // Forgets every record: after a fence no instruction can start before the fenced work is done,
  // so earlier accesses constrain nothing.
  void clear();

 private:
  struct Record {
    Region region;
    double done;
    bool write;
  };
  struct Retired {
    Memory memory;
    Region region;
    double done;
  };
  // An allocation's records, with the latest done times among them (of all, of the writes).
  struct Records {
    std::vector<Record> list;
    double latest = 0.0;
    double latest_write = 0.0;
    void add(const Record& r);
    void clear();
  };
  std::vector<Records> records_;  // by allocation id
  std::vector<Retired> retired_;
};

}  // namespace switchyard::neuron
