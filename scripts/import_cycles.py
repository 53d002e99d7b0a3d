#!/usr/bin/env python3
"""Fails (exit 1) when the files of src/ import each other in a circle.

Every `use crate::…`/`use super::…`/`use self::…`/`use child::…` and every inline `crate::a::b`
path outside comments and `#[cfg(test)] mod tests` is followed to the file that defines the
item: a `pub use` re-export in a `mod.rs` is passed through to the file it re-exports from, so
a folder's facade does not count as a dependency of its own. Prints each circle with its edges.
"""
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def module_of(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    return tuple(parts[:-1]) if parts[-1] in ("mod", "lib", "main") else tuple(parts)


def is_dir_module(path):
    return os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")


def code_of(path):
    src = open(path, encoding="utf-8").read()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", src)
    if cut:
        src = src[: cut.start()]
    src = re.sub(r"//[^\n]*", "", src)
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', src)


def expand(tree):
    """`a::{b, c::{d, e as f}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    head, body, out, depth, cur = m.group(1), m.group(2), [], 0, ""
    for ch in body + ",":
        if ch == "," and depth == 0:
            if cur:
                out += [head + x for x in expand(cur)]
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    return out


files = {}
for d, _, names in os.walk(ROOT):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(d, n)
            files[module_of(p)] = p

uses, reexports = {}, {}
for mod, path in files.items():
    code = code_of(path)
    children = set(re.findall(r"^\s*(?:pub(?:\([\w:]+\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
    uses[mod], reexports[mod] = [], {}
    for m in re.finditer(r"\b(pub(?:\([\w:]+\))?\s+)?use\s+([^;]+);", code):
        public = bool(m.group(1))
        for item in expand(m.group(2)):
            segs = [s for s in item.split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                full = segs[1:]
            elif segs[0] == "super":
                full = list(mod[:-1]) + segs[1:]
            elif segs[0] == "self":
                full = list(mod) + segs[1:]
            elif segs[0] in children:
                full = list(mod) + segs
            else:
                continue  # an external crate or std
            full = [s for s in full if s != "self"]
            if public and full:
                reexports[mod][full[-1]] = full
            else:
                uses[mod].append(full)
    for m in re.finditer(r"(?<![\w:])(crate|super)((?:::\w+)+)", code):
        if re.search(r"\buse\s+[^;]*$", code[max(0, m.start() - 200) : m.start()]):
            continue
        segs = [s for s in m.group(2).split("::") if s]
        full = segs if m.group(1) == "crate" else list(mod[:-1]) + segs
        uses[mod].append(full)


def resolve(full, depth=0):
    for n in range(len(full), -1, -1):
        t = tuple(full[:n])
        if t in files:
            if n < len(full) and full[n] in reexports.get(t, {}) and depth < 20:
                return resolve(reexports[t][full[n]], depth + 1)
            return t
    return None


edges = {m: set() for m in files}
for mod, paths in uses.items():
    for full in paths:
        t = resolve(full)
        if t is not None and t != mod and t != ():
            edges[mod].add(t)

sys.setrecursionlimit(10000)
index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w)
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
            circles.append(comp)


for v in sorted(edges):
    if v not in index:
        strong(v)
name = lambda m: "/".join(m) or "lib"
for c in circles:
    print("circle of imports:", " ".join(sorted(name(x) for x in c)))
    for a in sorted(c):
        for b in sorted(edges[a]):
            if b in c:
                print(f"    {name(a)} -> {name(b)}")
if not circles:
    print(f"import_cycles: no circle of imports among {len(files)} files of src/")
sys.exit(1 if circles else 0)
