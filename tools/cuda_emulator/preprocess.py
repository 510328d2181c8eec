#!/usr/bin/env python3
"""Rewrites a CUDA source file (.cu or .cuh) into C++ that g++ compiles against emulator.h.

Only what C++ cannot express is rewritten; everything else is left byte for byte, and every
rewrite keeps the line count, so that (with the #line directive put on top) compiler messages
and __LINE__ point into the original file:

  kernel<<<grid, block, bytes, stream>>>(args)
      -> ::emu::launch("kernel", __FILE__, __LINE__, dim3(grid), dim3(block), bytes, stream,
                       [&](auto... emu_args) { kernel(emu_args...); }, args)
  __global__ void __launch_bounds__(N) name(...) { body }
      -> __global__ void name(...) { ::emu::check_launch_bounds(N, "name"); body }
  extern __shared__ T name[];
      -> T* const name = ::emu::dynamic_shared<T>();
  __shared__ T name[dims];
      -> static T name[dims]; ::emu::touch_static_shared(name, sizeof(name));
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {d}, {a}, {b}, {c};" : ... : ...);
      -> ::emu::mma_m16n8k16_row_col_f32_bf16_bf16_f32({&d0, ...}, {a0, ...}, {b0, b1}, {c0, ...});
  #include <cub/...>
      -> #include "cub_stand_in.h"

Anything else the emulator cannot run (other inline PTX, several declarators in one __shared__
declaration, ...) stops the preprocessing with the file and line, rather than compiling into
something that runs differently.

Usage: preprocess.py INPUT OUTPUT
"""

import re
import sys


class PreprocessError(Exception):
    pass


class Source:
    """The text of a file, with which characters are code (not comment, string or char literal)."""

    def __init__(self, path, text):
        self.path = path
        self.text = text
        self.code = self._code_mask(text)

    @staticmethod
    def _code_mask(text):
        mask = bytearray(len(text))
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if text.startswith('//', i):
                j = text.find('\n', i)
                i = n if j < 0 else j
            elif text.startswith('/*', i):
                j = text.find('*/', i + 2)
                i = n if j < 0 else j + 2
            elif c == '"' or (c == "'" and not (i > 0 and text[i - 1].isalnum())):
                # A char literal, not a C++14 digit separator (1'000).
                j = i + 1
                while j < n and text[j] != c:
                    j += 2 if text[j] == '\\' else 1
                i = j + 1
            else:
                mask[i] = 1
                i += 1
        return mask

    def line_of(self, offset):
        return self.text.count('\n', 0, offset) + 1

    def fail(self, offset, message):
        raise PreprocessError('%s:%d: %s' % (self.path, self.line_of(offset), message))

    def find_code(self, pattern, start=0):
        """Matches of a regex that start in code."""
        for m in re.finditer(pattern, self.text[start:]):
            if self.code[start + m.start()]:
                yield start + m.start(), start + m.end(), m

    def matching(self, open_at):
        """Offset of the bracket closing the one at open_at, skipping comments and strings."""
        pairs = {'(': ')', '[': ']', '{': '}'}
        closers = set(pairs.values())
        stack = []
        for i in range(open_at, len(self.text)):
            c = self.text[i]
            if not self.code[i]:
                continue
            if c in pairs:
                stack.append(pairs[c])
            elif c in closers:
                if not stack or stack.pop() != c:
                    self.fail(i, 'unbalanced %r' % c)
                if not stack:
                    return i
        self.fail(open_at, 'unclosed %r' % self.text[open_at])

    def split_top_level(self, begin, end, separator):
        """Pieces of text[begin:end] between separators outside brackets, as (start, end) pairs."""
        pieces, depth, start, i = [], 0, begin, begin
        while i < end:
            c = self.text[i]
            if self.code[i]:
                if c in '([{':
                    depth += 1
                elif c in ')]}':
                    depth -= 1
                elif depth == 0 and self.text.startswith(separator, i):
                    # A lone ':' is a separator; '::' is a scope.
                    if separator != ':' or (self.text[i + 1:i + 2] != ':' and
                                            self.text[i - 1:i] != ':'):
                        pieces.append((start, i))
                        start = i + len(separator)
                        i = start
                        continue
            i += 1
        pieces.append((start, end))
        return pieces

    def skip_space(self, i):
        while i < len(self.text) and (self.text[i].isspace() or self.text.startswith('\\\n', i)):
            i += 1
        return i


def same_lines(replacement, original):
    """replacement followed by as many line breaks as `original` has (continuation lines inside
    a macro stay continuation lines)."""
    missing = original.count('\n') - replacement.count('\n')
    if missing <= 0:
        return replacement
    brk = ' \\\n' if '\\\n' in original else '\n'
    return replacement + brk * missing


def squeeze(text):
    return ' '.join(text.replace('\\\n', ' ').split())


def rewrite_launches(src, edits, counts):
    for start, _, _ in src.find_code(r'<<<'):
        text = src.text
        # The kernel expression before <<<: a (qualified) name with optional template arguments.
        k = start
        while k > 0 and (text[k - 1].isspace() or text[k - 1] == '\\'):
            k -= 1
        if text[k - 1] == '>':
            depth = 0
            while True:
                k -= 1
                if k < 0:
                    src.fail(start, 'cannot find the kernel before <<<')
                if text[k] == '>':
                    depth += 1
                elif text[k] == '<':
                    depth -= 1
                    if depth == 0:
                        break
        while k > 0 and (text[k - 1].isalnum() or text[k - 1] in '_:'):
            k -= 1
        kernel = text[k:start]
        if not re.match(r'[\w:]', kernel):
            src.fail(start, 'cannot find the kernel before <<<')
        # The configuration, up to the >>> outside brackets.
        depth, j = 0, start + 3
        while not (depth == 0 and text.startswith('>>>', j) and src.code[j]):
            if j >= len(text):
                src.fail(start, 'no >>> after <<<')
            if src.code[j]:
                depth += text[j] in '([{'
                depth -= text[j] in ')]}'
            j += 1
        config = [text[a:b] for a, b in src.split_top_level(start + 3, j, ',')]
        if not 2 <= len(config) <= 4:
            src.fail(start, 'a launch configuration has 2 to 4 parts, not %d' % len(config))
        config += ['0', '0'][len(config) - 2:]
        p = src.skip_space(j + 3)
        if text[p] != '(':
            src.fail(p, 'expected the kernel arguments after >>>')
        q = src.matching(p)
        args = text[p + 1:q]
        launch = ('::emu::launch("%s", __FILE__, __LINE__, dim3(%s), dim3(%s), '
                  'static_cast<size_t>(%s), (cudaStream_t)(%s), [&](auto... emu_args) { '
                  '%s(emu_args...); }' % (squeeze(kernel), config[0], config[1], config[2],
                                          config[3], kernel))
        if args.strip():
            launch += ',' + args
        launch += ')'
        edits.append((k, q + 1, launch))
        counts['launches'] += 1


def rewrite_launch_bounds(src, edits, counts):
    for start, end, _ in src.find_code(r'\b__launch_bounds__\s*\('):
        close = src.matching(end - 1)
        name = re.match(r'\s*([A-Za-z_]\w*)\s*\(', src.text[close + 1:])
        if not name:
            src.fail(start, 'expected the kernel name after __launch_bounds__(...)')
        params_open = close + 1 + name.end() - 1
        body = src.skip_space(src.matching(params_open) + 1)
        edits.append((start, close + 1, same_lines('', src.text[start:close + 1])))
        counts['launch bounds'] += 1
        if src.text[body] == '{':  # a definition, not a declaration
            # __launch_bounds__(max_threads[, min_blocks]): only the first argument is checked.
            bound_end = src.split_top_level(end, close, ',')[0][1]
            check = ' ::emu::check_launch_bounds((%s), "%s");' % (
                squeeze(src.text[end:bound_end]), name.group(1))
            edits.append((body + 1, body + 1, check))


def rewrite_shared(src, edits, counts):
    for start, end, _ in src.find_code(r'\b__shared__\b'):
        semicolon = src.text.find(';', end)
        decl = src.text[end:semicolon]
        before = src.text[:start]
        extern = re.search(r'\bextern\s+$', before)
        m = re.fullmatch(r'\s*(?P<type>[^,=]+?)\s*\b(?P<name>[A-Za-z_]\w*)\s*'
                         r'(?P<dims>(?:\[[^\]]*\]\s*)*)', decl)
        if not m or '{' in decl:
            src.fail(start, 'unsupported __shared__ declaration (one array or variable per '
                            'declaration, no initialiser): %s' % squeeze(decl))
        original = src.text[(extern.start() if extern else start):semicolon + 1]
        if extern:
            if m.group('dims').replace(' ', '') != '[]':
                src.fail(start, 'extern __shared__ must declare an unsized array')
            out = '%s* const %s = ::emu::dynamic_shared<%s>();' % (
                m.group('type'), m.group('name'), m.group('type'))
            edits.append((extern.start(), semicolon + 1, same_lines(out, original)))
            counts['dynamic shared'] += 1
        else:
            out = 'static %s %s%s; ::emu::touch_static_shared(&%s, sizeof(%s));' % (
                m.group('type'), m.group('name'), m.group('dims').rstrip(), m.group('name'),
                m.group('name'))
            edits.append((start, semicolon + 1, same_lines(out, original)))
            counts['static shared'] += 1


MMA = 'mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32'


def string_literals(text):
    """The concatenated contents of the C string literals in text (escapes \\n, \\t, \\")."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    joined = ''.join(parts)
    return joined.replace('\\n', '\n').replace('\\t', '\t').replace('\\"', '"')


ASM = r'\b(?:asm|__asm__)\b(?:\s+(?:volatile|__volatile__))?\s*\('


def rewrite_asm(src, edits, counts):
    for start, end, _ in src.find_code(ASM):
        close = src.matching(end - 1)
        semicolon = src.skip_space(close + 1)
        if src.text[semicolon] != ';':
            src.fail(start, 'expected ; after asm(...)')
        sections = src.split_top_level(end, close, ':')
        instruction = string_literals(src.text[sections[0][0]:sections[0][1]])
        groups = re.fullmatch(r'\s*' + re.escape(MMA) + r'\s*' +
                              r'\s*,\s*'.join([r'\{([^}]*)\}'] * 4) + r'\s*;?\s*', instruction)
        if not groups:
            src.fail(start, 'inline PTX the emulator does not know: %r (teach preprocess.py and '
                            'emulator.h)' % squeeze(instruction))
        operands = []  # (constraint, expression) in PTX operand order: outputs, then inputs
        for a, b in sections[1:3]:
            if not src.text[a:b].strip():
                continue
            for x, y in src.split_top_level(a, b, ','):
                op = re.fullmatch(r'\s*"([^"]*)"\s*\((.*)\)\s*', src.text[x:y], re.S)
                if not op:
                    src.fail(x, 'unsupported asm operand %r' % squeeze(src.text[x:y]))
                operands.append((op.group(1), squeeze(op.group(2))))

        def pick(group, count, constraint):
            refs = [r.strip() for r in groups.group(group).split(',')]
            if len(refs) != count or not all(re.fullmatch(r'%\d+', r) for r in refs):
                src.fail(start, 'expected %d operands %%N in group %d of %s' % (count, group, MMA))
            out = []
            for r in refs:
                index = int(r[1:])
                if index >= len(operands) or not operands[index][0].endswith(constraint):
                    src.fail(start, 'operand %s of %s should have constraint %r' %
                             (r, MMA, constraint))
                out.append(operands[index])
            return out

        d = pick(1, 4, 'f')
        if not all(c in ('=f', '+f') for c, _ in d):
            src.fail(start, 'the D operands of %s must be outputs' % MMA)
        a = pick(2, 4, 'r')
        b = pick(3, 2, 'r')
        c = pick(4, 4, 'f')
        call = ('::emu::mma_m16n8k16_row_col_f32_bf16_bf16_f32({%s}, {%s}, {%s}, {%s});' % (
            ', '.join('&(%s)' % e for _, e in d),
            ', '.join('static_cast<uint32_t>(%s)' % e for _, e in a),
            ', '.join('static_cast<uint32_t>(%s)' % e for _, e in b),
            ', '.join('static_cast<float>(%s)' % e for _, e in c)))
        edits.append((start, semicolon + 1, same_lines(call, src.text[start:semicolon + 1])))
        counts['mma asm'] += 1


def rewrite_includes(src, edits, counts):
    for start, end, _ in src.find_code(r'#\s*include\s*<cub/[^>]*>'):
        edits.append((start, end, '#include "cub_stand_in.h"'))
        counts['cub includes'] += 1


def apply_edits(text, edits):
    edits.sort(key=lambda e: (e[0], e[1]))
    for (a0, a1, _), (b0, _, _) in zip(edits, edits[1:]):
        if b0 < a1:
            raise PreprocessError('overlapping rewrites at offsets %d and %d' % (a0, b0))
    out, at = [], 0
    for begin, end, replacement in edits:
        out.append(text[at:begin])
        out.append(replacement)
        at = end
    out.append(text[at:])
    return ''.join(out)


def preprocess(path, text):
    src = Source(path, text)
    edits = []
    counts = {k: 0 for k in ('launches', 'launch bounds', 'dynamic shared', 'static shared',
                             'mma asm', 'cub includes')}
    rewrite_launches(src, edits, counts)
    rewrite_launch_bounds(src, edits, counts)
    rewrite_shared(src, edits, counts)
    rewrite_asm(src, edits, counts)
    rewrite_includes(src, edits, counts)
    out = apply_edits(text, edits)
    if out.count('\n') != text.count('\n'):
        raise PreprocessError('%s: rewriting changed the line count' % path)
    # Nothing the emulator cannot run may survive.
    check = Source(path, out)
    for pattern in (r'<<<', r'\b__shared__\b', r'\b(?:asm|__asm__)\b', r'\b__launch_bounds__\b'):
        for start, _, m in check.find_code(pattern):
            check.fail(start, '%r left after rewriting' % m.group(0))
    return '#line 1 "%s"\n%s' % (path, out), counts


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    source, target = argv[1], argv[2]
    with open(source, encoding='utf-8') as f:
        text = f.read()
    try:
        out, counts = preprocess(source, text)
    except PreprocessError as e:
        sys.stderr.write('preprocess.py: %s\n' % e)
        return 1
    with open(target, 'w', encoding='utf-8') as f:
        f.write(out)
    summary = ', '.join('%d %s' % (v, k) for k, v in counts.items() if v)
    sys.stderr.write('preprocess.py: %s: %s\n' % (source, summary or 'nothing to rewrite'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
