"""Folded stacks and a flame graph from `perf script` output, with nothing
but Python: the folded file has one "frame;frame;...;leaf count" line per
distinct stack (the format of Brendan Gregg's stackcollapse-perf.pl), the
SVG one box per frame, as wide as its share of the samples.

    fold(perf_script_text) -> {stack: count}
    write_folded(stacks, path)
    write_svg(stacks, path, title)
    top_self(stacks, n) / top_total(stacks, n) -> [(symbol, share)]
"""
import html
import re

_HEAD = re.compile(r"^\S.*\s(\d+(?:\.\d+)?):\s")
_FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.+?)(?:\s+\((\S+)\))?$")


def _clean(sym, dso):
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
    if sym == "[unknown]" and dso:
        sym = "[%s]" % dso.rsplit("/", 1)[-1]
    return sym.replace(";", ":")


def fold(text):
    """{stack, root first: samples} from `perf script` (with -g)."""
    stacks = {}
    frames = None
    for line in text.splitlines():
        if not line.strip():
            if frames:
                key = ";".join(reversed(frames))
                stacks[key] = stacks.get(key, 0) + 1
            frames = None
            continue
        if frames is None:
            if _HEAD.match(line) or not line.startswith((" ", "\t")):
                frames = []
            continue
        m = _FRAME.match(line)
        if m:
            frames.append(_clean(m.group(1), m.group(2)))
    if frames:
        key = ";".join(reversed(frames))
        stacks[key] = stacks.get(key, 0) + 1
    return stacks


def write_folded(stacks, path):
    with open(path, "w") as f:
        for k, v in sorted(stacks.items(), key=lambda kv: -kv[1]):
            f.write("%s %d\n" % (k, v))


def top_self(stacks, n=25):
    """The leaf functions with their share of the samples."""
    tot = sum(stacks.values()) or 1
    acc = {}
    for k, v in stacks.items():
        leaf = k.rsplit(";", 1)[-1]
        acc[leaf] = acc.get(leaf, 0) + v
    return [(s, c / tot) for s, c in
            sorted(acc.items(), key=lambda kv: -kv[1])[:n]]


def top_total(stacks, n=25):
    """Each function with the share of samples it is on the stack of."""
    tot = sum(stacks.values()) or 1
    acc = {}
    for k, v in stacks.items():
        for s in set(k.split(";")):
            acc[s] = acc.get(s, 0) + v
    return [(s, c / tot) for s, c in
            sorted(acc.items(), key=lambda kv: -kv[1])[:n]]


def _tree(stacks):
    root = {"n": 0, "c": {}}
    for k, v in stacks.items():
        node = root
        node["n"] += v
        for fr in k.split(";"):
            node = node["c"].setdefault(fr, {"n": 0, "c": {}})
            node["n"] += v
    return root


def _color(name):
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xffffff
    if name.startswith("[") or "k]" in name:
        return "rgb(%d,%d,%d)" % (200 + h % 50, 120 + (h >> 8) % 60, 60)
    return "rgb(%d,%d,%d)" % (220 + h % 35, 80 + (h >> 8) % 120, 40 + (h >> 16) % 40)


def write_svg(stacks, path, title, width=1200, row=16):
    """A flame graph of stacks: root at the bottom, a <title> per box."""
    root = _tree(stacks)
    total = root["n"] or 1
    boxes = []
    depth_max = [0]

    def walk(node, name, x, depth):
        w = node["n"] / total * (width - 20)
        if w < 0.3:
            return
        if name is not None:
            boxes.append((x, depth, w, name, node["n"]))
            depth_max[0] = max(depth_max[0], depth)
        cx = x
        for cname, child in sorted(node["c"].items()):
            walk(child, cname, cx, depth + (0 if name is None else 1))
            cx += child["n"] / total * (width - 20)

    walk(root, None, 10, 0)
    height = (depth_max[0] + 1) * row + 60
    out = ['<?xml version="1.0" standalone="no"?>',
           '<svg version="1.1" width="%d" height="%d" '
           'xmlns="http://www.w3.org/2000/svg" font-family="monospace" '
           'font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="#f8f8f0"/>',
           '<text x="%d" y="20" text-anchor="middle" font-size="15">%s '
           '(%d samples)</text>' % (width // 2, html.escape(title), total)]
    for x, depth, w, name, n in boxes:
        y = height - 20 - (depth + 1) * row
        label = name if len(name) * 7 < w else name[:max(0, int(w / 7) - 2)]
        out.append('<g><title>%s: %d samples, %.2f%%</title>'
                   '<rect x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s" rx="2"/>%s</g>' % (
                       html.escape(name), n, 100.0 * n / total, x, y, w,
                       row - 1, _color(name),
                       '<text x="%.1f" y="%d">%s</text>' % (
                           x + 2, y + row - 4, html.escape(label))
                       if len(label) > 2 else ""))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
