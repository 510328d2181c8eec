// Errors of the OpenAI-compatible API, in OpenAI's shape:
//   HTTP status + {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// Request parsing and the handlers throw ApiError; the server turns it into the response.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace switchyard::serve {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string type, std::string param = "", std::string code = "")
      : std::runtime_error(message),
        status(status),
        message(std::move(message)),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}

  int status;           // HTTP status
  std::string message;  // for a person
  std::string type;     // "invalid_request_error", "authentication_error", ...
  std::string param;    // the request field at fault; empty: null
  std::string code;     // a machine-readable reason such as "model_not_found"; empty: null
};

// 400 invalid_request_error naming `param` (empty: none).
ApiError invalid_request(std::string message, std::string param = "", std::string code = "");

// {"error": {...}}; empty param and code become null.
nlohmann::json error_body(const ApiError& error);

}  // namespace switchyard::serve
