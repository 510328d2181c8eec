#!/usr/bin/python3
"""Independent reference for Switchyard's GPT-2 tokenizer (src/tokenizer).

Implements the published GPT-2 byte-level BPE encoder algorithm in plain Python with the `regex`
module, and writes the reference files that tests/tokenizer_test.cc checks the C++ encoder against.

Command line (run from the repository root, with Debian's Python, which has python3-regex):

  /usr/bin/python3 tools/gpt2_tokenizer_reference.py [--vocab DIR] [--text FILE] [--out DIR]
      Writes into --out (default tests/data):
        tokenizer_tinyshakespeare_ids.u16  the ids of --text, little-endian uint16, no header
        tokenizer_cases.json               hand-picked hard cases and seeded random byte strings:
                                           [{"name", "input_hex", "ids"}]
        tokenizer_unicode_classes.txt      how the pre-tokenizer pattern classifies every code point:
                                           lines "FIRST LAST CLASS" (hex code points, inclusive;
                                           CLASS is L letter, N number, S whitespace, O other)
      --vocab defaults to /work/shared/data/gpt2 (encoder.json + vocab.bpe, or vocab.json +
      merges.txt); --text defaults to /work/shared/data/tinyshakespeare.txt.

  /usr/bin/python3 tools/gpt2_tokenizer_reference.py --vocab DIR --encode < input > ids
      Prints the ids of stdin (any bytes) separated by spaces, the format of `switchyard tokenize`.

Invalid UTF-8 is read as Python's bytes.decode('utf-8', errors='surrogateescape') reads it: every
byte that is not part of a valid UTF-8 sequence becomes a lone surrogate U+DC80+byte, which the
pattern classes as neither letter, number nor whitespace; each chunk is turned back into its
original bytes with str.encode('utf-8', 'surrogateescape') before BPE, so any byte string encodes.
"""

import argparse
import json
import os
import random
import sys

import regex

# GPT-2's pre-tokenizer: contractions, optional-space + letters / numbers / other, whitespace runs.
PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_to_char_table():
    """Maps each byte to a printable character: bytes that print as themselves in Latin-1 keep their
    code point; the other 68 bytes take code points 256, 257, ... in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def adjacent_pairs(symbols):
    return {(symbols[i], symbols[i + 1]) for i in range(len(symbols) - 1)}


class Gpt2Encoder:
    def __init__(self, vocab_dir):
        if os.path.exists(os.path.join(vocab_dir, "encoder.json")):
            encoder_path = os.path.join(vocab_dir, "encoder.json")
            merges_path = os.path.join(vocab_dir, "vocab.bpe")
        else:
            encoder_path = os.path.join(vocab_dir, "vocab.json")
            merges_path = os.path.join(vocab_dir, "merges.txt")
        with open(encoder_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.decoder = {i: s for s, i in self.encoder.items()}
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        # The first line is "#version: ..."; the file ends with a newline.
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_to_char = byte_to_char_table()
        self.char_to_byte = {c: b for b, c in self.byte_to_char.items()}
        self.cache = {}

    def bpe(self, token):
        """Merges the lowest-ranked adjacent pair (all its occurrences, left to right) until no
        adjacent pair has a rank."""
        if token in self.cache:
            return self.cache[token]
        symbols = list(token)
        while len(symbols) > 1:
            pairs = adjacent_pairs(symbols)
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            merged = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self.cache[token] = symbols
        return symbols

    def encode(self, data):
        text = data.decode("utf-8", errors="surrogateescape")
        ids = []
        for chunk in PATTERN.findall(text):
            chunk_bytes = chunk.encode("utf-8", errors="surrogateescape")
            token = "".join(self.byte_to_char[b] for b in chunk_bytes)
            ids.extend(self.encoder[s] for s in self.bpe(token))
        return ids

    def decode(self, ids):
        return bytes(self.char_to_byte[c] for i in ids for c in self.decoder[i])


def hard_cases():
    """(name, bytes) pairs that exercise every branch of the pattern, BPE and the UTF-8 handling."""
    u = lambda s: s.encode("utf-8")
    cases = [
        ("empty", b""),
        ("hello", u("Hello world")),
        ("contractions", u("it's don't we're they've I'm you'll he'd")),
        ("contractions_upper", u("IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D 'S 'T")),
        ("contractions_bare", u("'s't're've'm'll'd''s 's 'x '")),
        ("contraction_after_space", u("rock 'n' roll ' s ''ll")),
        ("digits", u("0 1 12 123 1234 12345 3.14159 -42 1,000,000 2024-05-20")),
        ("long_number", u("1234567890" * 30)),
        ("numbers_unicode", u("\u0661\u0662\u0663 \u2160\u2161 \u00bd \u00b2 \u2460")),
        ("emoji", u("I \u2764\ufe0f tokens \U0001F600\U0001F680")),
        ("emoji_zwj", u("\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family")),
        ("emoji_skin", u("\U0001F44D\U0001F3FD \U0001F44B\U0001F3FF wave")),
        ("emoji_flags", u("\U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5")),
        ("cjk", u("\u6211\u559c\u6b22\u673a\u5668\u5b66\u4e60\u3002\u65e5\u672c\u8a9e\u3067\u3059"
                  "\u3002\ud55c\uad6d\uc5b4")),
        ("cjk_long_run", u("\u6c49\u5b57\u6f22\u5b57\u4e2d\u6587" * 200)),
        ("arabic", u("\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645")),
        ("hebrew_devanagari", u("\u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947")),
        ("accents_nfc", u("caf\u00e9 na\u00efve \u00c5ngstr\u00f6m")),
        ("accents_nfd", u("cafe\u0301 nai\u0308ve A\u030angstro\u0308m")),
        ("whitespace_runs", u("a  b   c    d\t\te\n\nf \n g")),
        ("newline_indent", u("\n\n  x")),
        ("trailing_spaces", u("end   ")),
        ("only_spaces", u("     ")),
        ("only_newlines", u("\n\n\n")),
        ("tabs_mixed", u("\t \t x\t\n\r\n y")),
        ("unicode_spaces", u("a\u00a0b\u2003c\u3000d\u202fe \u2028f\u0085g\x0bh\x0ci\x1cj\x1fk")),
        ("mongolian_vowel_separator", u("a\u180eb \u180e\u180e c")),
        ("long_spaces", u(" " * 300 + "x" + " " * 300)),
        ("long_letters", u("ab" * 1500)),
        ("repeated_pair", u("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")),
        ("endoftext", u("<|endoftext|>")),
        ("endoftext_in_text", u("end.<|endoftext|>Next doc <|endoftext|> x")),
        ("punctuation", u("Hello, world!!! (really?) -- \"quoted\" [x]{y} #$%^&*")),
        ("code", u("def f(x):\n    return x**2  # square\n")),
        ("url", u("https://example.com/a_b?c=1&d=%20")),
        ("unicode15_letters", u("\U00011F04\U00011F05 \U0001E4D0\U0001E4D1 \U00031350x \U0001123F")),
        ("unicode15_numbers", u("\U00011F50\U00011F51 \U0001D2C0 \U0001E4F0 1\U0001E4F1")),
        ("invalid_lone_continuation", b"a\x80b \x80\xbf c\x80"),
        ("invalid_ff_fe", b"\xff\xfe\xff abc \xff"),
        ("invalid_truncated_2", b"x\xc3 y\xc3"),
        ("invalid_truncated_3", b"x\xe2\x82 y\xe2\x82"),
        ("invalid_truncated_4", b"x\xf0\x9f\x98 y\xf0\x9f\x98"),
        ("invalid_overlong", b"\xc0\xaf \xc1\xbf \xe0\x80\xaf \xf0\x80\x80\xaf"),
        ("invalid_surrogates", b"\xed\xa0\x80 \xed\xbf\xbf a\xed\xb2\x80b"),
        ("invalid_above_max", b"\xf4\x90\x80\x80 \xf5\x80\x80\x80 \xf8\x88\x80\x80\x80"),
        ("invalid_mixed_letters", b"caf\xe9 na\xefve"),
        ("invalid_between_spaces", b"  \x80  \n\xff\n"),
        ("invalid_apostrophe", b"'\x80s '\xffll it\xe2\x80's"),
        ("valid_boundaries", u("\u007f\u0080\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff")),
        ("private_use", u("\ue000\ue0ff abc\uf8ff")),
        ("control_chars", bytes(range(0, 32)) + b" \x7f"),
        ("all_bytes", bytes(range(256))),
    ]
    return cases


def random_cases(count, seed):
    """Seeded random byte strings built from fragments that stress chunk boundaries."""
    rng = random.Random(seed)
    fragments = [b" ", b"  ", b"\n", b"\t", b"'", b"'s", b"'ll", b"a", b"Z", b"word", b"123", b"9",
                 b".", b"!?", b"<|endoftext|>", "\u00e9".encode(), "e\u0301".encode(),
                 "\u4e2d".encode(), "\U0001F600".encode(), "\u0661".encode(),
                 "\u00a0".encode(), "\u3000".encode(), b"\x80", b"\xff", b"\xc3", b"\xe2\x82",
                 b"\xed\xa0\x80", b"\xf0\x9f", b"\xc0\x80"]
    cases = []
    for k in range(count):
        n = rng.randrange(1, 40)
        if k % 4 == 3:  # raw random bytes
            data = bytes(rng.randrange(256) for _ in range(n))
        else:
            data = b"".join(rng.choice(fragments) for _ in range(n))
        cases.append((f"random_{k}", data))
    # Long chunks over tiny alphabets: many equal pairs, so the order of merges within a rank and
    # across ranks decides the result.
    alphabets = [b"ab", b"aab", b"est", b"0123", b"01", b" \n", "\u00e9e".encode(), b"\x80a"]
    for k in range(4 * len(alphabets)):
        alphabet = alphabets[k % len(alphabets)]
        n = rng.randrange(100, 600)
        cases.append((f"random_long_{k}", bytes(rng.choice(alphabet) for _ in range(n))))
    return cases


def pattern_class(c):
    if regex.fullmatch(r"\p{L}", c):
        return "L"
    if regex.fullmatch(r"\p{N}", c):
        return "N"
    if regex.fullmatch(r"\s", c):
        return "S"
    return "O"


def unicode_class_runs():
    """Runs of code points with the same pattern class; surrogates (not encodable) are left out."""
    runs = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cls = pattern_class(chr(cp))
        if runs and runs[-1][2] == cls and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, cls])
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", default="/work/shared/data/gpt2")
    parser.add_argument("--text", default="/work/shared/data/tinyshakespeare.txt")
    parser.add_argument("--out", default="tests/data")
    parser.add_argument("--encode", action="store_true", help="encode stdin and print the ids")
    args = parser.parse_args()
    encoder = Gpt2Encoder(args.vocab)

    if args.encode:
        ids = encoder.encode(sys.stdin.buffer.read())
        sys.stdout.write(" ".join(map(str, ids)) + "\n")
        return

    with open(args.text, "rb") as f:
        text = f.read()
    ids = encoder.encode(text)
    assert encoder.decode(ids) == text
    assert max(ids) < 65536
    with open(os.path.join(args.out, "tokenizer_tinyshakespeare_ids.u16"), "wb") as f:
        f.write(b"".join(i.to_bytes(2, "little") for i in ids))
    print(f"{args.text}: {len(text)} bytes -> {len(ids)} tokens")

    cases = []
    for name, data in hard_cases() + random_cases(300, seed=20240520):
        case_ids = encoder.encode(data)
        assert encoder.decode(case_ids) == data, name
        cases.append({"name": name, "input_hex": data.hex(), "ids": case_ids})
    with open(os.path.join(args.out, "tokenizer_cases.json"), "w") as f:
        # One case per line keeps the file readable and its diffs small.
        f.write("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")
    print(f"{len(cases)} cases")

    runs = unicode_class_runs()
    with open(os.path.join(args.out, "tokenizer_unicode_classes.txt"), "w") as f:
        f.write(f"# Pattern class of each code point, from the Python regex module {regex.__version__}"
                " (L letter, N number, S whitespace, O other)\n")
        for first, last, cls in runs:
            f.write(f"{first:X} {last:X} {cls}\n")
    print(f"{len(runs)} code point runs")


if __name__ == "__main__":
    main()
