// Assertions on the errors users see: the message of a switchyard::Error, checked for the words
// that make it clear.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace switchyard {

// The message of the Error `fn` throws, or "<no error>".
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// Expects `fn` to throw an Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  const std::string message = error_of(fn);
  if (message == "<no error>") {
    ADD_FAILURE() << "expected an Error mentioning '" << parts.front() << "'";
    return;
  }
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos)
        << "message '" << message << "' does not mention '" << part << "'";
  }
}

}  // namespace switchyard
