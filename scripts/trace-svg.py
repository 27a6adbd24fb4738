#!/usr/bin/env python3
"""Draws one trace as an SVG timeline.

Input: the JSON list of spans the tracing_otlp test writes when
CRIO_TEST_TRACE_JSON names a file (service, name, span_id, parent_span_id,
start_ns, end_ns of each span the test's OTLP receiver got). Output: an SVG
with one row per span, in tree order, indented by depth, coloured by service.

    CRIO_TEST_TRACE_JSON=/tmp/trace.json \
        cargo nextest run -p crio-test --test tracing_otlp one_pod
    scripts/trace-svg.py /tmp/trace.json docs/pod-start-trace.svg
"""
import json
import sys
from html import escape

ROW, LABEL_W, BAR_W, PAD = 22, 300, 620, 12
RIGHT = 70  # room for the last bar's duration
COLOURS = {"caller": "#9e9e9e", "crio": "#4c78a8", "containerd-shim-crio-v2": "#f58518"}


def tree_order(spans):
    """Spans depth-first from the roots (spans whose parent is not in the
    trace), children by start time; each with its depth."""
    ids = {s["span_id"] for s in spans}
    children = {}
    for s in spans:
        parent = s["parent_span_id"] if s["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(s)
    out = []

    def walk(parent, depth):
        for s in sorted(children.get(parent, []), key=lambda s: int(s["start_ns"])):
            out.append((s, depth))
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return out


def with_caller(spans, rows):
    """A first row for the caller's span (the kubelet's, known only by the
    traceparent's ID) when every root hangs from the same one."""
    ids = {s["span_id"] for s in spans}
    parents = {s["parent_span_id"] for s, depth in rows if depth == 0}
    if len(parents) != 1 or not next(iter(parents)) or next(iter(parents)) in ids:
        return rows
    parent = next(iter(parents))
    caller = {
        "service": "caller",
        "name": f"caller's span {parent} (traceparent)",
        "start_ns": min(int(s["start_ns"]) for s in spans),
        "end_ns": max(int(s["end_ns"]) for s in spans),
    }
    return [(caller, 0)] + [(s, depth + 1) for s, depth in rows]


def render(spans):
    rows = with_caller(spans, tree_order(spans))
    t0 = min(int(s["start_ns"]) for s in spans)
    t1 = max(int(s["end_ns"]) for s in spans)
    total_ms = max((t1 - t0) / 1e6, 1e-3)
    scale = BAR_W / total_ms
    height = PAD * 2 + ROW * (len(rows) + 2)
    width = LABEL_W + BAR_W + PAD * 3 + RIGHT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    x0 = LABEL_W + PAD
    # Axis: a tick every round number of milliseconds.
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000) if total_ms / s <= 10)
    tick = 0.0
    while tick <= total_ms:
        x = x0 + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" y2="{height - PAD - ROW}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - PAD}" text-anchor="middle" fill="#555">{tick:g} ms</text>')
        tick += step
    for i, (s, depth) in enumerate(rows):
        y = PAD + ROW * i
        start = (int(s["start_ns"]) - t0) / 1e6
        dur = (int(s["end_ns"]) - int(s["start_ns"])) / 1e6
        colour = COLOURS.get(s["service"], "#54a24b")
        label = escape(s["name"])
        out.append(f'<text x="{PAD + depth * 12}" y="{y + 15}" fill="{colour}">{label}</text>')
        out.append(
            f'<rect x="{x0 + start * scale:.1f}" y="{y + 4}" width="{max(dur * scale, 1):.1f}" '
            f'height="{ROW - 8}" fill="{colour}"><title>{label} ({escape(s["service"])}) '
            f'{dur:.2f} ms</title></rect>'
        )
        out.append(
            f'<text x="{x0 + (start + dur) * scale + 4:.1f}" y="{y + 15}" fill="#333">{dur:.1f} ms</text>'
        )
    y = PAD + ROW * len(rows) + 4
    for j, (service, colour) in enumerate(COLOURS.items()):
        out.append(f'<rect x="{PAD + j * 220}" y="{y}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{PAD + j * 220 + 14}" y="{y + 10}">{service}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        spans = json.load(f)
    if not spans:
        sys.exit("no spans")
    with open(sys.argv[2], "w") as f:
        f.write(render(spans))


if __name__ == "__main__":
    main()
