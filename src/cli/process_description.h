// One line on how this process runs, for --verbose: its CPU threads and why that many, how idle
// threads wait, and the machine.
#pragma once

#include <string>

namespace switchyard::cli {

std::string describe_process();

}  // namespace switchyard::cli
