// The server-sent event parser: the framing rules of the event-stream format (line ends, comments,
// fields, multi-line data, dispatch), and the same events whatever way the bytes are split.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/sse_parser.h"

namespace switchyard::client {
namespace {

struct Seen {
  std::string type, data, id;
  bool operator==(const Seen&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Seen& s) {
  return os << "{" << s.type << ", \"" << s.data << "\", id " << s.id << "}";
}

// The events of `pieces` fed one after another; `unclosed` gets what finish() returned.
std::vector<Seen> parse(const std::vector<std::string>& pieces, bool* unclosed = nullptr) {
  std::vector<Seen> seen;
  SseParser parser([&](const SseEvent& e) { seen.push_back({e.type, e.data, e.id}); });
  for (const std::string& piece : pieces) parser.feed(piece);
  const bool left = parser.finish();
  if (unclosed) *unclosed = left;
  return seen;
}

std::vector<Seen> parse(const std::string& whole) { return parse(std::vector<std::string>{whole}); }

TEST(SseParser, OneEvent) {
  EXPECT_EQ(parse("data: hello\n\n"), (std::vector<Seen>{{"message", "hello", ""}}));
}

TEST(SseParser, LineEndsLfCrLfAndCrAreAllLineEnds) {
  const std::vector<Seen> want = {{"message", "a", ""}, {"message", "b", ""}, {"message", "c", ""}};
  EXPECT_EQ(parse("data: a\n\ndata: b\r\n\r\ndata: c\r\r"), want);
  EXPECT_EQ(parse("data: a\r\n\ndata: b\r\rdata: c\n\r\n"), want);
}

TEST(SseParser, CrLfSplitBetweenReadsIsOneLineEnd) {
  // Were the LF taken for a second line end, "a" and "b" would be two events.
  EXPECT_EQ(parse(std::vector<std::string>{"data: a\r", "\ndata: b\r", "\n\r", "\n"}),
            (std::vector<Seen>{{"message", "a\nb", ""}}));
  // A CR at the end of a read followed by a CR: a line end, then a blank line.
  EXPECT_EQ(parse(std::vector<std::string>{"data: a\r", "\r"}), (std::vector<Seen>{{"message", "a", ""}}));
}

TEST(SseParser, CommentsAreIgnored) {
  EXPECT_TRUE(parse(": keep-alive\n\n").empty());
  EXPECT_EQ(parse(": ping\ndata: x\n: another\n\n"), (std::vector<Seen>{{"message", "x", ""}}));
}

TEST(SseParser, DataLinesJoinWithLf) {
  EXPECT_EQ(parse("data: one\ndata: two\ndata: three\n\n"), (std::vector<Seen>{{"message", "one\ntwo\nthree", ""}}));
  EXPECT_EQ(parse("data: one\ndata\ndata: three\n\n"), (std::vector<Seen>{{"message", "one\n\nthree", ""}}));
}

TEST(SseParser, OneSpaceAfterTheColonIsDropped) {
  EXPECT_EQ(parse("data:x\n\n")[0].data, "x");
  EXPECT_EQ(parse("data: x\n\n")[0].data, "x");
  EXPECT_EQ(parse("data:  x \n\n")[0].data, " x ");
  EXPECT_EQ(parse("data: a: b\n\n")[0].data, "a: b");  // only the first colon separates
}

TEST(SseParser, EmptyDataIsStillAnEvent) {
  EXPECT_EQ(parse("data\n\n"), (std::vector<Seen>{{"message", "", ""}}));
  EXPECT_EQ(parse("data:\n\n"), (std::vector<Seen>{{"message", "", ""}}));
}

TEST(SseParser, AnEventWithoutDataIsNotDispatched) {
  // Nor does its type carry over to the next event.
  EXPECT_EQ(parse("event: ping\n\ndata: x\n\n"), (std::vector<Seen>{{"message", "x", ""}}));
  EXPECT_TRUE(parse("\n\n\n").empty());
}

TEST(SseParser, EventTypeAppliesToItsEventOnly) {
  EXPECT_EQ(parse("event: error\ndata: bad\n\ndata: good\n\n"),
            (std::vector<Seen>{{"error", "bad", ""}, {"message", "good", ""}}));
}

TEST(SseParser, LastIdCarriesOver) {
  EXPECT_EQ(parse("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"),
            (std::vector<Seen>{{"message", "a", "7"}, {"message", "b", "7"}, {"message", "c", ""}}));
}

TEST(SseParser, UnknownFieldsAndRetryAreIgnored) {
  EXPECT_EQ(parse("retry: 1000\nfoo: bar\nDATA: no\ndata: yes\n\n"), (std::vector<Seen>{{"message", "yes", ""}}));
}

TEST(SseParser, LeadingByteOrderMarkIsDropped) {
  EXPECT_EQ(parse("\xEF\xBB\xBF" "data: x\n\n"), (std::vector<Seen>{{"message", "x", ""}}));
  EXPECT_EQ(parse(std::vector<std::string>{"\xEF", "\xBB", "\xBF" "data: x\n\n"}),
            (std::vector<Seen>{{"message", "x", ""}}));
  // Only at the start of the stream: later it is part of the line, an unknown field.
  EXPECT_EQ(parse("data: a\n\n\xEF\xBB\xBF" "data: b\n\n"), (std::vector<Seen>{{"message", "a", ""}}));
}

TEST(SseParser, UnclosedLastEventIsDroppedAndReported) {
  bool unclosed = false;
  EXPECT_EQ(parse(std::vector<std::string>{"data: a\n\ndata: b"}, &unclosed), (std::vector<Seen>{{"message", "a", ""}}));
  EXPECT_TRUE(unclosed);
  EXPECT_EQ(parse(std::vector<std::string>{"data: a\n\ndata: b\n"}, &unclosed), (std::vector<Seen>{{"message", "a", ""}}));
  EXPECT_TRUE(unclosed);
  parse(std::vector<std::string>{"data: a\n\n"}, &unclosed);
  EXPECT_FALSE(unclosed);
}

// An OpenAI-style stream with every kind of line end and a comment: split at every byte, and at
// every pair of places, it gives the events it gives whole.
TEST(SseParser, EverySplitGivesTheSameEvents) {
  const std::string stream =
      ": keep-alive\r\n"
      "data: {\"choices\":[{\"text\":\"Hel\"}]}\r\n\r\n"
      "data: {\"choices\":[{\"text\":\"lo\"}]}\n\n"
      "event: note\rdata: line one\rdata: line two\r\r"
      "data: first\r\ndata: second\r\n\r\n"
      "id: 3\ndata: {\"usage\":{\"completion_tokens\":2}}\n\n"
      "data: [DONE]\r\n\r\n";
  const std::vector<Seen> want = {{"message", "{\"choices\":[{\"text\":\"Hel\"}]}", ""},
                                  {"message", "{\"choices\":[{\"text\":\"lo\"}]}", ""},
                                  {"note", "line one\nline two", ""},
                                  {"message", "first\nsecond", ""},
                                  {"message", "{\"usage\":{\"completion_tokens\":2}}", "3"},
                                  {"message", "[DONE]", "3"}};
  ASSERT_EQ(parse(stream), want);
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  EXPECT_EQ(parse(bytes), want);
  for (size_t i = 0; i <= stream.size(); ++i) {
    for (size_t j = i; j <= stream.size(); j += 3) {
      const std::vector<std::string> pieces = {stream.substr(0, i), stream.substr(i, j - i), stream.substr(j)};
      ASSERT_EQ(parse(pieces), want) << "split at " << i << " and " << j;
    }
  }
}

}  // namespace
}  // namespace switchyard::client
