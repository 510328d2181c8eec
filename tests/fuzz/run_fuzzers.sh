#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz/ with clang and runs each for a while on a seed corpus
# of small valid files generated here (and the checkpoint index in tests/data).
#
# usage: tests/fuzz/run_fuzzers.sh [SECONDS_PER_FUZZER (default 60)] [BUILD_DIR (default build-fuzz)]
#   FUZZ_JOBS     parallel build jobs (default 2)
#   FUZZ_KEEP     if set, the corpus directory is kept (its path is printed)
#   FUZZ_TARGETS  the fuzzers to build and run (default: all; e.g. "tokenizer_json safetensors_index")
#
# Inputs that crash a fuzzer are saved under BUILD_DIR/fuzz-artifacts/ and the script exits 1.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${2:-$root/build-fuzz}"
jobs="${FUZZ_JOBS:-2}"
read -r -a targets <<<"${FUZZ_TARGETS:-safetensors token_shard safetensors_index tokenizer_json api_request}"

# tests/CMakeLists.txt compiles each fuzzer together with its parser's sources, instrumented.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSWITCHYARD_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" --target "${targets[@]/%/_fuzzer}" -j"$jobs"

work="$(mktemp -d "${TMPDIR:-/tmp}/switchyard_fuzz.XXXXXX")"
if [[ -z "${FUZZ_KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; else echo "corpus kept in $work"; fi
mkdir -p "$work/safetensors" "$work/token_shard" "$work/safetensors_index" "$work/tokenizer_json" "$work/api_request" \
  "$build/fuzz-artifacts"
cp "$root/tests/data/gpt_oss_reference/model.safetensors.index.json" "$work/safetensors_index/gpt_oss_reference"

# Seeds: a few valid files of each format, written from first principles (not by the code under test).
python3 - "$work" <<'EOF'
import json, os, struct, sys

work = sys.argv[1]

def safetensors(name, tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes); data packed in list order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for tname, dtype, shape, raw in tensors:
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(work, "safetensors", name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)

safetensors("empty", [])
safetensors("f32", [("w", "F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7))],
            {"format": "pt"})
safetensors("mixed", [("a", "BF16", [2], b"\x80\x3f\xc0\x3f"),
                      ("b", "F16", [1, 2], b"\x00\x3c\x00\xc0"),
                      ("c", "I32", [], struct.pack("<i", -5)),
                      ("d", "U16", [0, 4], b""),
                      ("e", "I64", [1], struct.pack("<q", 1 << 40)),
                      ("f", "F32", [1 << 32, 1 << 32, 0], b"")])

def shard(name, tokens, version=1):
    """Version 1 holds uint16 tokens, version 2 uint32."""
    header = struct.pack("<3i", 20240520, version, len(tokens)) + b"\0" * (4 * 253)
    with open(os.path.join(work, "token_shard", name), "wb") as f:
        f.write(header + struct.pack("<%d%s" % (len(tokens), "H" if version == 1 else "I"), *tokens))

shard("empty", [])
shard("one", [50256])
shard("several", [(i * 7919) % 65536 for i in range(100)])
shard("wide", [200018, 0, 65536, 201087], version=2)

def write_json(target, name, value):
    with open(os.path.join(work, target, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, separators=(",", ":"))

write_json("safetensors_index", "two_shards", {
    "metadata": {"total_size": 36},
    "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                   "c": "model-00002-of-00002.safetensors"}})
write_json("safetensors_index", "one", {"weight_map": {"lm_head.weight": "model.safetensors"}})

# GPT-2's byte alphabet: bytes that print as themselves in Latin-1 keep their code point, the other
# 68 get U+0100, U+0101, ... in byte order.
prints = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
alphabet, extra = {}, 0x100
for b in range(256):
    alphabet[b] = chr(b) if b in prints else chr(extra)
    extra += b not in prints

def spell(token):
    return "".join(alphabet[b] for b in token)

def tokenizer(name, merged, pre_tokenizer, merge_form, specials_in_vocab=False):
    """The 256 bytes (id = byte value), each merge's result in order, then two special tokens."""
    vocab = {spell(bytes([b])): b for b in range(256)}
    merges = []
    for left, right in merged:
        vocab[spell(left + right)] = len(vocab)
        pair = [spell(left), spell(right)]
        merges.append(" ".join(pair) if merge_form == "string" else pair)
    specials = [{"id": len(vocab) + i, "content": text, "special": True}
                for i, text in enumerate(["<|endoftext|>", "<|start|>"])]
    if specials_in_vocab:
        vocab.update({s["content"]: s["id"] for s in specials})
    write_json("tokenizer_json", name, {
        "version": "1.0", "added_tokens": specials, "normalizer": None, "pre_tokenizer": pre_tokenizer,
        "model": {"type": "BPE", "vocab": vocab, "merges": merges}})

merged = [(b"a", b"b"), (b"ab", b"c"), (b" ", b"t"), (b"h", b"e"), (b" t", b"he"), (b"\n", b"\n")]
o200k_pattern = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                 r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                 r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
tokenizer("split_then_byte_level", merged,
          {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": o200k_pattern}, "behavior": "Isolated", "invert": False},
              {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
          "pair")
tokenizer("byte_level_alone", merged[:3], {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
          "string", specials_in_vocab=True)

# Request bodies of both endpoints, every field the parser reads in use.
write_json("api_request", "completion", {
    "model": "tiny", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,
    "top_k": 40, "seed": 7, "stop": ["\n\n", "END"], "logprobs": 2, "n": 1, "stream": True,
    "stream_options": {"include_usage": True}, "user": "u"})
write_json("api_request", "completion_ids", {"model": "tiny", "prompt": [1, 2, 999], "stop": "x"})
write_json("api_request", "chat", {
    "model": "tiny", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": None}, {"role": "user", "content": "caf\u00e9"}],
    "reasoning_effort": "low", "max_completion_tokens": 8, "logprobs": True, "top_logprobs": 3})
EOF

cat >"$work/safetensors.dict" <<'EOF'
"{"
"}"
"["
"]"
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"I32\""
"\"U16\""
"\"I64\""
"\"F64\""
"18446744073709551615"
"9223372036854775807"
"-1"
EOF

cat >"$work/safetensors_index.dict" <<'EOF'
"\"weight_map\""
"\"metadata\""
"\"total_size\""
".safetensors"
"\"..\""
"/"
"\\u0000"
"null"
EOF

cat >"$work/tokenizer_json.dict" <<'EOF'
"\"model\""
"\"vocab\""
"\"merges\""
"\"type\""
"\"BPE\""
"\"added_tokens\""
"\"content\""
"\"id\""
"\"pre_tokenizer\""
"\"pretokenizers\""
"\"Sequence\""
"\"Split\""
"\"ByteLevel\""
"\"Regex\""
"\"behavior\""
"\"Isolated\""
"\"use_regex\""
"\"invert\""
"\"add_prefix_space\""
"4194303"
"4194304"
"2147483648"
"-1"
"\\u0120"
"\\\\C"
"\\\\K"
"(?<="
"(*"
"<|endoftext|>"
EOF

cat >"$work/api_request.dict" <<'EOF'
"\"model\""
"\"prompt\""
"\"messages\""
"\"role\""
"\"content\""
"\"max_tokens\""
"\"max_completion_tokens\""
"\"temperature\""
"\"top_p\""
"\"stop\""
"\"logprobs\""
"\"top_logprobs\""
"\"stream_options\""
"\"include_usage\""
"\"reasoning_effort\""
"null"
"true"
"-1"
"18446744073709551616"
EOF

# A tokenizer.json holds its 256 single-byte tokens before anything else: a few kilobytes.
declare -A max_len=([tokenizer_json]=16384)
status=0
for target in "${targets[@]}"; do
  echo "=== ${target}_fuzzer for ${seconds}s"
  dict=()
  [[ -f "$work/$target.dict" ]] && dict=(-dict="$work/$target.dict")
  if ! "$build/tests/${target}_fuzzer" "$work/$target" "${dict[@]}" -max_total_time="$seconds" \
      -max_len="${max_len[$target]:-4096}" -print_final_stats=1 \
      -artifact_prefix="$build/fuzz-artifacts/${target}-"; then
    echo "!!! ${target}_fuzzer found a failing input; see $build/fuzz-artifacts/"
    status=1
  fi
done
exit "$status"
