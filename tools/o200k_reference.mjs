// Writes tests/data/o200k_reference.json: o200k ids, from the npm package js-tiktoken (which ships
// its own copy of the o200k_base ranks), for a corpus chosen to exercise every branch of the
// o200k pre-tokenizer pattern. tests/o200k_tokenizer_test.cc compares Switchyard's encoder with it.
//
//   cd tools && npm install --no-save js-tiktoken@1.0.21 && node o200k_reference.mjs
//
// Arguments (optional): the tinyshakespeare text and the output path.
import { readFileSync, writeFileSync } from "node:fs";
import { Tiktoken } from "js-tiktoken/lite";
import o200k_base from "js-tiktoken/ranks/o200k_base";

const shakespearePath = process.argv[2] ?? "../../shared/data/tinyshakespeare.txt";
const outPath = process.argv[3] ?? "../tests/data/o200k_reference.json";

// o200k_harmony = o200k_base plus gpt-oss's chat-format tokens.
const harmonySpecials = {
  "<|startoftext|>": 199998, "<|return|>": 200002, "<|constrain|>": 200003,
  "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007, "<|message|>": 200008,
  "<|call|>": 200012,
};
const encoder = new Tiktoken(o200k_base, harmonySpecials);

const shakespeare = readFileSync(shakespearePath, "utf8");

const plain = [
  "a", "Z", " ", "hello world", "Hello, World!",
  // Latin with accents, combining marks, mixed case
  "Café déjà vu, naïve façade; Ærøskøbing ŒUVRE Straße",
  "e\u0301cole cafe\u0301 A\u030Angstro\u0308m",
  "CamelCaseWords likeThisOne HTTPServer iPhone McDONALD'S",
  // Cyrillic, Greek, CJK, Arabic, Devanagari, Hebrew, Thai, Korean
  "Съешь же ещё этих мягких французских булок, да выпей чаю. ПРИВЕТ Мир",
  "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΑΛΦΑ βήτα",
  "我能吞下玻璃而不伤身体。日本語のテキスト、カタカナとひらがな。",
  "أنا قادر على أكل الزجاج و هذا لا يؤلمني. ١٢٣٤٥",
  "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती. १२३",
  "אני יכול לאכול זכוכית וזה לא מזיק לי. ภาษาไทย 한국어 문장입니다",
  // emoji: single, skin tones, ZWJ sequences, flags, keycaps
  "I ❤️ emoji 😀😃😄 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵🇺🇸 1️⃣ #️⃣",
  // numbers of many lengths
  "1 12 123 1234 12345 123456 1234567 12345678901234567890",
  "3.14159 -42 +7 1,000,000 0x1F 1e-10 2024-05-20 12:34:56 $19.99 50%",
  // contractions in every case
  "it's IT'S It'S they'll THEY'LL they'Ll we've WE'VE we'Ve I'm I'M you'd YOU'D don't DON'T you're YOU'RE",
  "'s 'S 'll 'LL 'Ll 'lL 've 'VE 'Ve 'vE 're 'RE 'd 'D 'm 'M 't 'T",
  // whitespace runs, tabs, CR LF, trailing spaces
  "a  b   c    d\t\te\t f \t g",
  "line one\r\nline two\r\n\r\nline four\n\n\nend   ",
  "   leading spaces and trailing spaces   ",
  "\n\n  \n\t\n",
  "tabs\tbetween\twords\t",
  // punctuation runs
  "Wait... what?!?! (really) [yes] {no} <tag attr=\"v\"/> ---- ==== **bold** __init__",
  "path/to/file.txt C:\\Windows\\System32 https://example.com/a?b=c&d=e#frag",
  "x+=1; if (a&&b||!c) { return a->b; } // comment\n/* block */",
  "ellipsis… dashes — – and “quotes” ‘single’ «guillemets» ¿qué? ¡sí!",
  // the special-token strings as plain text
  "<|endoftext|> and <|start|>user<|message|>hi<|end|>",
  // mixed scripts without spaces
  "abcДЕЖαβγ中文123العربية",
  shakespeare.slice(0, 3000),
];

const withSpecials = [
  "<|start|>user<|message|>hi<|end|>",
  "<|startoftext|>Hello<|endoftext|>",
  "<|start|>assistant<|channel|>final<|message|>The answer is 42.<|return|>",
  "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>",
  "<|endofprompt|> <|start|>x<|end|><|end|>",
  "no specials here",
  "<|notaspecial|> <|start",
];

const cases = plain.map((text) => ({ text, ids: encoder.encode(text, [], []) }));

// The whole of tinyshakespeare is too long to store; its ids are checked by count and by the
// 64-bit FNV-1a hash of their little-endian uint32 bytes.
function fnv1a64(ids) {
  let hash = 0xcbf29ce484222325n;
  for (const id of ids) {
    for (let b = 0; b < 4; ++b) {
      hash ^= BigInt((id >>> (8 * b)) & 0xff);
      hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
    }
  }
  return hash.toString(16).padStart(16, "0");
}
const shakespeareIds = encoder.encode(shakespeare, [], []);
const specialCases = withSpecials.map((text) => ({ text, ids: encoder.encode(text, "all") }));

// One case per line keeps the file readable and its diffs small.
const line = (c) => "    " + JSON.stringify(c);
const json = [
  "{",
  '  "source": "js-tiktoken 1.0.21, o200k_base ranks plus the o200k_harmony chat tokens",',
  `  "tinyshakespeare": {"tokens": ${shakespeareIds.length}, "fnv1a64": "${fnv1a64(shakespeareIds)}"},`,
  '  "plain": [',
  cases.map(line).join(",\n"),
  "  ],",
  '  "with_special_tokens": [',
  specialCases.map(line).join(",\n"),
  "  ]",
  "}",
  "",
].join("\n");
writeFileSync(outPath, json);
console.log(`wrote ${cases.length + specialCases.length} cases to ${outPath}`);
