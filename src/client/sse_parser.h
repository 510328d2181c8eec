// Incremental parser of a server-sent event stream (the "text/event-stream" format of the HTML
// standard), the framing OpenAI-compatible servers stream completions in. Bytes arrive in whatever
// pieces the network delivers: an event, a line, even a CR LF pair may be split between two reads,
// so the parser keeps the unfinished line and event between calls to feed().
//
// What it follows of the standard: lines end with CR LF, LF or CR; a blank line dispatches the
// event; a line starting with ':' is a comment; "field: value" loses one space after the colon;
// several "data" lines join with LF; an event with no data is not dispatched; a leading byte order
// mark is dropped; "retry" and unknown fields are ignored.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace switchyard::client {

struct SseEvent {
  std::string type = "message";  // the "event" field, "message" when there is none
  std::string data;              // the "data" lines joined with LF
  std::string id;                // the last "id" seen in the stream so far
};

class SseParser {
 public:
  using Handler = std::function<void(const SseEvent&)>;

  // `on_event` is called once per complete event, from within feed().
  explicit SseParser(Handler on_event);

  // Takes the next bytes of the stream, in any split.
  void feed(std::string_view bytes);

  // The stream ended. A last event not closed by a blank line is dropped (as the standard says, so
  // a truncated event is never taken for a whole one); returns whether anything was left unclosed.
  bool finish();

 private:
  void take_line(std::string_view line);
  void dispatch();

  Handler on_event_;
  std::string line_;         // the current line so far, without its end
  bool after_cr_ = false;    // the last byte fed was CR: an LF first in the next piece ends nothing
  bool first_line_ = true;   // the byte order mark can only start the stream
  std::string data_;         // each data line followed by LF, as the standard's data buffer
  std::string type_;         // the "event" field of the event being read
  std::string last_id_;
};

}  // namespace switchyard::client
