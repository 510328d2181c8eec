#include "client/sse_parser.h"

#include <utility>

namespace switchyard::client {

SseParser::SseParser(Handler on_event) : on_event_(std::move(on_event)) {}

void SseParser::feed(std::string_view bytes) {
  size_t pos = 0;
  if (after_cr_ && !bytes.empty()) {
    after_cr_ = false;
    if (bytes[0] == '\n') pos = 1;  // the LF of a CR LF split between two reads
  }
  while (pos < bytes.size()) {
    const size_t end = bytes.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(pos));
      return;
    }
    line_.append(bytes.substr(pos, end - pos));
    take_line(line_);
    line_.clear();
    pos = end + 1;
    if (bytes[end] == '\r') {
      if (pos == bytes.size()) {
        after_cr_ = true;
      } else if (bytes[pos] == '\n') {
        ++pos;
      }
    }
  }
}

bool SseParser::finish() {
  const bool unclosed = !line_.empty() || !data_.empty() || !type_.empty();
  line_.clear();
  data_.clear();
  type_.clear();
  after_cr_ = false;
  return unclosed;
}

void SseParser::take_line(std::string_view line) {
  if (first_line_) {
    first_line_ = false;
    constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
    if (line.substr(0, kByteOrderMark.size()) == kByteOrderMark) line.remove_prefix(kByteOrderMark.size());
  }
  if (line.empty()) {
    dispatch();
    return;
  }
  if (line[0] == ':') return;  // a comment, such as the keep-alive some servers send
  std::string_view field = line, value;
  if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    data_.append(value);
    data_.push_back('\n');
  } else if (field == "event") {
    type_ = value;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_ = value;
  }
}

void SseParser::dispatch() {
  if (data_.empty()) {  // no data line since the last event: nothing to deliver
    type_.clear();
    return;
  }
  data_.pop_back();  // the LF after the last data line
  SseEvent event;
  if (!type_.empty()) event.type = std::move(type_);
  event.data = std::move(data_);
  event.id = last_id_;
  data_.clear();
  type_.clear();
  on_event_(event);
}

}  // namespace switchyard::client
