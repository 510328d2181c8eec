#include "dist/peer_watch.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <sstream>

#include <fmt/format.h>

namespace switchyard::dist {

namespace {

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

// Whether process `pid` is gone (kill(pid, 0) fails with ESRCH; EPERM means it exists).
bool process_gone(long pid) { return kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; }

}  // namespace

PeerWatch::PeerWatch(Communicator& comm, std::function<void(const std::string&)> on_lost)
    : rank_(comm.rank()), on_lost_(std::move(on_lost)) {
  const std::string host = host_name();
  const std::vector<std::string> all =
      comm.all_gather_text(fmt::format("{} {}", static_cast<long>(getpid()), host));
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    std::istringstream fields(all[static_cast<size_t>(r)]);
    Peer peer{r, 0, ""};
    fields >> peer.pid >> peer.host;
    if (r != rank_ && peer.host == host && peer.pid > 0) peers_.push_back(peer);
  }
  if (!peers_.empty()) thread_ = std::thread([this] { watch(); });
}

PeerWatch::~PeerWatch() { stop(); }

void PeerWatch::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<int> PeerWatch::watched_ranks() const {
  std::vector<int> ranks;
  for (const Peer& p : peers_) ranks.push_back(p.rank);
  return ranks;
}

void PeerWatch::watch() {
  using namespace std::chrono_literals;
  while (!stopping_) {
    for (const Peer& p : peers_) {
      if (process_gone(p.pid)) {
        on_lost_(fmt::format("rank {}: rank {} (process {} on {}) has exited; stopping", rank_,
                             p.rank, p.pid, p.host));
        return;
      }
    }
    for (int i = 0; i < 10 && !stopping_; ++i) std::this_thread::sleep_for(50ms);
  }
}

}  // namespace switchyard::dist
