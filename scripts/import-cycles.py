#!/usr/bin/env python3
"""Fails when the files under src/ import each other in a circle.

An arrow A -> B means file A names an item of file B: in a `use` (groups
expanded) or a path in its code (`crate::…`, `super::…`, or from a child
module). A path resolves to the deepest file module it names, and a name
that module only hands on (`pub use error::SinkError` in src/sink/mod.rs) to
the file that defines it (src/sink/error.rs); handing a name on is not an
arrow itself. A module's files and the files inside its folder are one room
(no arrows between them). `mod` declarations are containment, not arrows, and
test-only files (tests.rs,
*_tests.rs, `#[cfg(test)]` modules) are left out. Prints each circle with the
arrows that tie it; exit 1 if there is one. Standard library only.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(rel):
    """src-relative file path -> module path (tuple)."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_lines(text):
    """The file's lines up to its first #[cfg(test)] module, comments dropped."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(
            r"\s*(#\[path.*\]\s*)?mod \w+", lines[i + 1]
        ):
            break
        out.append(line.split("//", 1)[0])
    return out


def expand(path):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (no `as`, no `*`)."""
    path = re.sub(r"\s+", "", path)
    m = re.match(r"^(.*?)\{(.*)\}$", path)
    if not m:
        return [re.sub(r"(::\*|as\w+)$", "", path)]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for it in items:
        if it:
            out.extend(expand(prefix + it))
    return out


def resolve(files, handed, mod, path, depth):
    """The file module `path` (named in module `mod`) ends up at, and the name."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None, ""
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = mod
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif any(k[: len(mod) + 1] == mod + (segs[0],) for k in files):
        base = mod  # a child module, named from its parent
    else:
        return None, ""
    target, rest = (base if base in files else None), list(segs)
    while rest and any(k[: len(base) + 1] == base + (rest[0],) for k in files):
        base = base + (rest.pop(0),)
        if base in files:
            target = base
    name = segs[-1] if segs else "*"
    # A name the module only hands on: follow it to where it is defined.
    if target is not None and rest and depth < 8:
        on = handed.get(target, {}).get(rest[0])
        if on is not None:
            deeper, _ = resolve(files, handed, target, on, depth + 1)
            if deeper is not None:
                return deeper, name
    return target, name


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs") and not (n == "tests.rs" or n.endswith("_tests.rs")):
                rel = os.path.relpath(os.path.join(root, n), SRC)
                files[module_of(rel)] = rel
    edges, uses, handed = {}, {}, {}
    for mod, rel in files.items():
        text = "\n".join(code_lines(open(os.path.join(SRC, rel), encoding="utf-8").read()))
        # `pub use` hands names on: remembered, not an arrow.
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for e in expand(m.group(1)):
                handed.setdefault(mod, {})[e.split("::")[-1]] = e
        text = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", "", text)
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(expand(m.group(1)))
        text = re.sub(r"\buse\s+[^;]+;", "", text)
        # Paths in code: from crate or super, or from a child module (not
        # after `::`, which would be inside a longer path).
        paths.extend(re.findall(r"(?<!::)\b[a-z_]\w*(?:::\w+)+", text))
        uses[rel] = (mod, paths)
    for rel, (mod, paths) in uses.items():
        for p in paths:
            target, name = resolve(files, handed, mod, p, 0)
            # A module and the files inside it (a trait in mod.rs, its
            # implementations beside it) are one room: no arrow between them.
            if target is None or target[: len(mod)] == mod or mod[: len(target)] == target:
                continue
            edges.setdefault(rel, {}).setdefault(files[target], set()).add(name)
    # Tarjan's strongly connected components.
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(files.values()):
        if v not in index:
            visit(v)
    for c in circles:
        print("import circle: " + ", ".join("src/" + f for f in c))
        for a in c:
            for b, names in sorted(edges.get(a, {}).items()):
                if b in c:
                    print(f"  src/{a} -> src/{b}: {', '.join(sorted(names))}")
    if circles:
        print(f"{len(circles)} import circle(s): the code should flow one way (see docs/development.md)")
        return 1
    print(f"import-cycles: {len(files)} files, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
