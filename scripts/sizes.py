#!/usr/bin/env python3
"""File and function sizes under src/, against the house style's limits:
the median file, the files over 400 lines, the functions over 60 lines.

Usage: scripts/sizes.py [REPO_DIR]   (default: this repository)

A function runs from its `fn` line to its closing brace (strings, chars and
line comments are ignored while counting braces). Standard library only.
"""
import os
import re
import statistics
import sys

FN = re.compile(r"\s*(pub(\([a-z]+\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")


def braces(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def functions(lines):
    """(length, name) of every function with a body."""
    out, i = [], 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m or lines[i].strip().startswith("//"):
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            text = braces(lines[j])
            if not opened and text.rstrip().endswith(";") and "{" not in text:
                break
            for ch in text:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if opened and depth == 0:
                break
            j += 1
        if opened:
            out.append((j - i + 1, m.group(6)))
        i = j + 1 if opened else i + 1
    return out


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    root = sys.argv[1] if len(sys.argv) > 1 else here
    files, funcs = [], []
    for d, _, names in os.walk(os.path.join(root, "src")):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(d, name)
            rel = os.path.relpath(path, root)
            lines = open(path, encoding="utf-8").read().split("\n")
            files.append((len(lines), rel))
            funcs += [(n, f"{rel}:{f}") for n, f in functions(lines)]
    big = [f"{p} ({n})" for n, p in sorted(files, reverse=True) if n > 400]
    long_fns = [f"{p} ({n})" for n, p in sorted(funcs, reverse=True) if n > 60]
    print(f"files: {len(files)}, median {statistics.median(n for n, _ in files):.0f} lines; "
          f"over 400: {len(big)} {big}")
    print(f"functions: {len(funcs)}, median {statistics.median(n for n, _ in funcs):.0f} lines; "
          f"over 60: {len(long_fns)}")
    for f in long_fns:
        print(f"  {f}")


if __name__ == "__main__":
    main()
