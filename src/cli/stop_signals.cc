#include "cli/stop_signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace switchyard::cli {

namespace {

// Lock-free, so that reading and writing it from a signal handler is safe.
std::atomic<int> g_received{0};
static_assert(std::atomic<int>::is_always_lock_free);

struct sigaction g_previous_int, g_previous_term;

// Set before the handlers are installed; the handler only reads it.
const char* g_message = StopSignals::kTrainingMessage;
size_t g_message_length = 0;

void on_stop_signal(int signal) {
  if (g_received.exchange(signal) != 0) _exit(StopSignals::exit_code(signal));
  ssize_t ignored = ::write(STDERR_FILENO, g_message, g_message_length);
  (void)ignored;
}

}  // namespace

StopSignals::StopSignals(const char* message) {
  g_received = 0;
  g_message = message;
  g_message_length = std::strlen(message);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // file writes in progress carry on rather than fail with EINTR
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int StopSignals::received() { return g_received.load(); }

const char* StopSignals::name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

}  // namespace switchyard::cli
