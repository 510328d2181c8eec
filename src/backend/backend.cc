#include "backend/backend.h"

#include "core/error.h"

namespace switchyard::backend {

void Backend::start_trace() {
  fail("device '{}' is not a simulator: --trace needs trn1-sim or trn2-sim", name());
}

void Backend::finish_trace(const std::string& path) {
  fail("device '{}' is not a simulator: --trace needs trn1-sim or trn2-sim", name());
}

}  // namespace switchyard::backend
