#!/usr/bin/env python3
"""Find the import circles between the files of a Rust crate.

Usage: scripts/import-cycles.py [--edges] CRATE/src [...]

For each crate's `src/` folder it builds the file-level graph of module
references and prints the strongly connected components of more than one
file (each one an import circle), then exits 1 if it found any.

A file is a module (`a/mod.rs` and `a.rs` are the module `a`; `lib.rs` and
`main.rs` are the crate root); inline `mod x { ... }` blocks belong to their
file. An edge F -> G means that F names, by path, an item or module that G
defines:

- `use` declarations (`crate::`, `super::`, `self::`, a child module, or a
  name imported earlier), including `pub use` re-exports: a `use` that
  names a whole module is an alias and counts only where the alias is used,
  a glob (`use x::*`) counts as a reference to `x`;
- paths in code and types (`crate::a::b`, `super::x`, `child::y`,
  `imported_module::z`), test modules included.

Paths through re-exports are followed to the file that defines the item
(`crate::ParseError` is `error.rs`, not `lib.rs`). Comments and string
literals are skipped, so doc links do not count. What a path-based reading
cannot see does not count either: method calls, trait impls, macros'
expansions and `#[path]` modules.

Python 3, standard library only.
"""

import argparse
import os
import re
import sys

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS_NOT_PATH_START = {"crate", "super", "self", "Self"}


def tokenize(text):
    """Yield the tokens of Rust source: identifiers, `::` and single
    punctuation characters; comments, strings and chars are dropped."""
    i, n = 0, len(text)
    tokens = []
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == '"' or (c in "br" and re.match(r'(b?r#*"|b")', text[i:i + 40])):
            m = re.match(r'b?r(#*)"', text[i:i + 40])
            if m:  # raw string: ends at `"` followed by as many `#`
                end = '"' + m.group(1)
                j = text.find(end, i + m.end())
                i = n if j < 0 else j + len(end)
            else:
                i = text.index('"', i) + 1
                while i < n and text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
                i += 1
            tokens.append(("lit", '""'))
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'])'", text[i:i + 16])
            if m:
                i += m.end()
                tokens.append(("lit", "''"))
            else:
                m = IDENT.match(text, i + 1)
                i = m.end() if m else i + 1
                tokens.append(("lifetime", "'"))
        elif c == "_" or c.isalpha():
            m = IDENT.match(text, i)
            word = m.group(0)
            i = m.end()
            # Byte chars b'x' are caught here as `b` then a char literal.
            tokens.append(("ident", word))
        elif text.startswith("::", i):
            tokens.append(("punct", "::"))
            i += 2
        elif c.isdigit():
            m = re.match(r"[0-9][0-9A-Za-z_.]*", text[i:])
            i += m.end()
            tokens.append(("lit", "0"))
        else:
            tokens.append(("punct", c))
            i += 1
    return tokens


class Crate:
    def __init__(self, src):
        self.src = os.path.normpath(src)
        self.files = {}  # module path (tuple) -> file (relative)
        self.file_of = {}  # module path (tuple, inline included) -> file
        self.tokens = {}
        self.imports = {}  # scope -> {name: (scope, raw segments, glob)}
        self.globs = {}  # scope -> [(scope, raw segments)]
        self.refs = {}  # file -> [(scope, raw segments, is_use)]
        self._load()

    def _load(self):
        for root, _, names in os.walk(self.src):
            for name in sorted(names):
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(root, name)
                rel = os.path.relpath(path, self.src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts = parts[:-1]
                elif parts == ["lib"] or parts == ["main"]:
                    parts = []
                module = tuple(parts)
                if module in self.files and module != ():
                    continue
                self.files[module] = rel
                self.file_of[module] = rel
                with open(path, encoding="utf-8") as f:
                    self.tokens[rel] = tokenize(f.read())
        # Inline modules first: they are module names for the paths.
        for module, rel in self.files.items():
            self._scan(module, rel, inline_only=True)
        for module, rel in self.files.items():
            self._scan(module, rel, inline_only=False)

    def _scan(self, module, rel, inline_only):
        toks = self.tokens[rel]
        stack = [(module, -1)]  # (scope, brace depth where it closes)
        depth = 0
        refs = self.refs.setdefault(rel, [])
        i = 0
        while i < len(toks):
            kind, tok = toks[i]
            scope = stack[-1][0]
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if stack[-1][1] == depth:
                    stack.pop()
            elif kind == "ident" and tok == "mod" and i + 2 < len(toks) and toks[i + 1][0] == "ident":
                name = toks[i + 1][1]
                if toks[i + 2][1] == "{":
                    inner = scope + (name,)
                    self.file_of.setdefault(inner, rel)
                    stack.append((inner, depth))
                    depth += 1
                    i += 3
                    continue
                i += 2
                continue
            elif not inline_only and kind == "ident" and tok == "use" and _is_use_decl(toks, i):
                j, paths = _parse_use_tree(toks, i + 1, [])
                for segs, alias, glob in paths:
                    if glob:
                        self.globs.setdefault(scope, []).append((scope, segs))
                        refs.append((scope, segs, "glob"))
                    elif segs:
                        name = alias if alias is not None else segs[-1]
                        if segs[-1] == "self":
                            segs = segs[:-1]
                            name = alias if alias is not None else (segs[-1] if segs else None)
                        if name and name != "_":
                            self.imports.setdefault(scope, {})[name] = (scope, segs)
                        refs.append((scope, segs, "use"))
                i = j
                continue
            elif not inline_only and kind == "ident" and _starts_path(toks, i):
                segs = [tok]
                j = i + 1
                while j + 1 < len(toks) and toks[j][1] == "::" and toks[j + 1][0] == "ident":
                    segs.append(toks[j + 1][1])
                    j += 2
                if len(segs) > 1:
                    refs.append((scope, segs, "path"))
                i = j
                continue
            i += 1

    def absolutize(self, scope, segs, seen=0):
        """Absolute module path of a path written in `scope`, or None when
        it names something outside the crate (or a local item)."""
        if not segs or seen > 32:
            return None
        first = segs[0]
        if first in ("crate", "$crate"):
            return list(segs[1:])
        if first == "super" or first == "self":
            base = list(scope)
            k = 0
            while k < len(segs) and segs[k] in ("super", "self"):
                if segs[k] == "super":
                    if not base:
                        return None
                    base.pop()
                k += 1
            # `super` in an inline module goes to its parent, which may be
            # in the same file: that is fine, the file is what counts.
            return base + list(segs[k:])
        if scope + (first,) in self.file_of:
            return list(scope) + list(segs)
        imported = self.imports.get(scope, {}).get(first)
        if imported is not None:
            iscope, isegs = imported
            base = self.absolutize(iscope, isegs, seen + 1)
            if base is None:
                return None
            return base + list(segs[1:])
        return None

    def resolve(self, abs_segs, seen=0):
        """The file that defines what an absolute path names, and whether
        the path names a whole module."""
        module = ()
        i = 0
        while i < len(abs_segs):
            s = abs_segs[i]
            if module + (s,) in self.file_of:
                module = module + (s,)
                i += 1
                continue
            if seen < 32:
                imported = self.imports.get(module, {}).get(s)
                if imported is not None:
                    iscope, isegs = imported
                    base = self.absolutize(iscope, isegs)
                    if base is not None:
                        return self.resolve(base + list(abs_segs[i + 1:]), seen + 1)
            return self.file_of[module], False
        return self.file_of[module], True

    def graph(self):
        edges = {rel: set() for rel in self.tokens}
        for rel, refs in self.refs.items():
            for scope, segs, how in refs:
                abs_segs = self.absolutize(scope, segs)
                if abs_segs is None:
                    continue
                target, whole_module = self.resolve(abs_segs)
                if how == "use" and whole_module:
                    continue  # an alias: counted where it is used
                if target != rel:
                    edges[rel].add(target)
        return edges


def _is_use_decl(toks, i):
    # `use` starts a declaration after `;`, `{`, `}`, `]` (an attribute),
    # `pub`, `pub(crate)` or at the start of the file.
    if i == 0:
        return True
    prev = toks[i - 1][1]
    return prev in (";", "{", "}", "]", "pub", ")")


def _starts_path(toks, i):
    if i + 2 >= len(toks) or toks[i + 1][1] != "::" or toks[i + 2][0] != "ident":
        return False
    if i > 0 and toks[i - 1][1] == "::":
        return False  # the middle of a longer path
    if i > 0 and toks[i - 1][1] == "$" and toks[i][1] == "crate":
        return True
    return True


def _parse_use_tree(toks, i, prefix):
    """Parse a use tree from toks[i]; returns (index after `;`, [(segments,
    alias, glob)])."""
    out = []
    j = _use_tree(toks, i, list(prefix), out)
    while j < len(toks) and toks[j][1] != ";":
        j += 1
    return j + 1, out


def _use_tree(toks, i, prefix, out):
    segs = list(prefix)
    if i < len(toks) and toks[i][1] == "::":  # `use ::extern_crate`
        i += 1
        segs = ["::extern"]
    while i < len(toks):
        kind, tok = toks[i]
        if tok == "$" and i + 1 < len(toks) and toks[i + 1][1] == "crate":
            segs.append("$crate")
            i += 2
        elif kind == "ident":
            segs.append(tok)
            i += 1
        elif tok == "*":
            out.append((segs, None, True))
            return i + 1
        elif tok == "{":
            i += 1
            while i < len(toks) and toks[i][1] != "}":
                i = _use_tree(toks, i, segs, out)
                if i < len(toks) and toks[i][1] == ",":
                    i += 1
            return i + 1
        else:
            return i
        if i < len(toks) and toks[i][1] == "::":
            i += 1
            continue
        alias = None
        if i + 1 < len(toks) and toks[i][1] == "as":
            alias = toks[i + 1][1]
            i += 2
        if segs and segs[0] == "::extern":
            return i
        out.append((segs, alias, False))
        return i
    return i


def components(edges):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                result.append(sorted(comp))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="+", help="a crate's src/ folder")
    parser.add_argument("--edges", action="store_true", help="also print the edges inside each circle")
    args = parser.parse_args()
    found = 0
    for src in args.src:
        if not os.path.isdir(src):
            print(f"{src}: not a folder", file=sys.stderr)
            return 2
        crate = Crate(src)
        edges = crate.graph()
        circles = [c for c in components(edges) if len(c) > 1]
        circles.sort(key=lambda c: (-len(c), c))
        n_edges = sum(len(v) for v in edges.values())
        print(f"{src}: {len(edges)} files, {n_edges} edges, {len(circles)} import circle(s)")
        for k, comp in enumerate(circles, 1):
            print(f"  circle {k} ({len(comp)} files): {' '.join(comp)}")
            if args.edges:
                members = set(comp)
                for f in comp:
                    for t in sorted(edges[f] & members):
                        print(f"    {f} -> {t}")
        found += len(circles)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
