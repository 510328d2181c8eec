// Notices a rank of the job that has died, so that the others stop with a message naming it
// instead of waiting forever in their next collective.
//
// At start every rank learns every other's host and process id. A thread then checks, twice a
// second, whether the processes of the ranks on its own host still exist; the first that does not
// is reported through `on_lost` (which is expected not to return: a collective may be blocked on
// that rank, and nothing can unblock it). Ranks on other hosts are left to the launcher, which
// ends the whole job when one of its processes dies (mpirun, srun --kill-on-bad-exit).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "dist/communicator.h"

namespace switchyard::dist {

class PeerWatch {
 public:
  // Collective: every rank constructs one at the same point.
  PeerWatch(Communicator& comm, std::function<void(const std::string& message)> on_lost);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // Stops watching. Every rank stops before the job's last barrier, so that none exits while
  // another still watches it.
  void stop();

  // The ranks whose processes this one can watch (same host), for tests and messages.
  std::vector<int> watched_ranks() const;

 private:
  struct Peer {
    int rank;
    long pid;
    std::string host;
  };
  void watch();

  std::vector<Peer> peers_;  // on this host, this rank excluded
  int rank_ = 0;
  std::function<void(const std::string&)> on_lost_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace switchyard::dist
