// The check at the start of a data-parallel run that every rank was given the same run: the same
// model, data, batch and optimizer settings. A rank started differently would silently train on
// something else (or hang in a collective of another shape), so the run stops at once instead.
#pragma once

#include <map>
#include <string>

#include "dist/communicator.h"

namespace switchyard::train {

// Collective. Throws Error on every rank, naming each setting in which a rank differs from rank 0
// and both values, when any does.
void check_same_run(dist::Communicator& comm, const std::map<std::string, std::string>& settings);

}  // namespace switchyard::train
