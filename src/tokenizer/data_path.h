// Where a tokenizer's data files are: the path the user gave, else an environment variable, else
// the project's default place beside the checkout (../shared/data/...).
#pragma once

#include <string>
#include <string_view>

namespace switchyard::tokenizer {

struct DataPathSearch {
  const char* env;            // e.g. "SWITCHYARD_O200K"
  std::string relative;       // the default, relative to the working directory
  bool directory = false;     // a directory (true) or a file (false)
  std::string_view what;      // for the error: "no {what} found"
  std::string_view hint;      // for the error, after the list of places tried
};

// `explicit_path` when it is not empty; else the first of $env and `relative` that exists (as a
// file or directory, as `search` says). Throws Error listing the places tried and the hint.
std::string find_data_path(const std::string& explicit_path, const DataPathSearch& search);

}  // namespace switchyard::tokenizer
