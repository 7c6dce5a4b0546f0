#!/usr/bin/env python3
"""Architecture counts of the cmwq library crate (issue 10), so that they can be re-measured.

* crate-visible fields: struct fields declared `pub(crate)`;
* `pub(crate)` items: every `pub(crate)` in the crate (items, fields, methods, re-exports);
* module cycles: pairs of top-level modules (`crate::X`) that each name the other
  (`crate::X` paths, and `super::` from a file directly below the crate root);
* the largest strongly connected component of the top-level module graph.

Comments and doc comments are ignored; `loom_models` (test-only) is left out.
Usage: scripts/arch-metrics.py [crates/cmwq/src]
"""
import os, re, sys, itertools

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "crates", "cmwq", "src")
root = os.path.normpath(root)
files = []
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            files.append(os.path.join(d, f))

def top_module(path):
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if parts == ["lib.rs"]:
        return None
    return parts[0][:-3] if parts[0].endswith(".rs") else parts[0]

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*$", "", l) for l in text.splitlines())

mods = sorted({m for m in map(top_module, files) if m and m != "loom_models"})
edges = {m: set() for m in mods}
fields = items = 0
per_file_fields = {}
for path in files:
    m = top_module(path)
    if m == "loom_models" or path.endswith("model_hooks.rs"):
        continue
    text = strip_comments(open(path).read())
    n_items = len(re.findall(r"\bpub\(crate\)", text))
    n_fields = len(re.findall(r"^\s*pub\(crate\) (?!fn\b|const\b|static\b|type\b|struct\b|enum\b|trait\b|mod\b|use\b|unsafe\b|async\b)[a-z_][a-z_0-9]*\s*:", text, flags=re.M))
    items += n_items
    fields += n_fields
    if n_fields:
        per_file_fields[os.path.relpath(path, root)] = n_fields
    if m is None:
        continue
    names = set(re.findall(r"\bcrate::([a-z_][a-z_0-9]*)", text))
    # `use crate::{a, b::c}` groups
    for grp in re.findall(r"\bcrate::\{([^}]*)\}", text):
        names |= set(re.findall(r"(?:^|[,{\s])([a-z_][a-z_0-9]*)", grp))
    # `super::x` from a file directly inside a top-level module directory names crate::x only
    # when the file is the module's own mod.rs
    rel = os.path.relpath(path, root).split(os.sep)
    if len(rel) == 2 and rel[1] == "mod.rs" or len(rel) == 1:
        names |= set(re.findall(r"\bsuper::([a-z_][a-z_0-9]*)", text))
    for n in names:
        if n in edges and n != m:
            edges[m].add(n)

pairs = sorted((a, b) for a, b in itertools.combinations(mods, 2) if b in edges[a] and a in edges[b])

# Tarjan's SCC
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in mods:
    if v not in index:
        strong(v)
big = max(sccs, key=len)

print(f"top-level modules: {len(mods)}")
print(f"pub(crate) items: {items}")
print(f"crate-visible (pub(crate)) fields: {fields}")
for f, n in sorted(per_file_fields.items(), key=lambda x: -x[1]):
    print(f"  {n:3} {f}")
print(f"module cycles (mutually dependent pairs): {len(pairs)}")
for a, b in pairs:
    print(f"  {a} <-> {b}")
print(f"largest strongly connected component: {len(big)} ({', '.join(big)})")
