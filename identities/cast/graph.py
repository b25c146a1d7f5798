"""The cast graph and per-person timelines as inline SVG (the admin's file page), built server-side.

Pure functions of plain numbers and names — no database, no template, no JavaScript, no CDN —
so the picture is testable and renders wherever the admin does. Every name is escaped (names
come from users and imports); numbers are formatted by us.

* :func:`graph_svg`: people on a circle, most screen time first from the top, clockwise; a
  node's *area* is proportional to its screen time, an edge's width and opacity to the time two
  people share. Hovering a node or an edge shows the figures (``<title>``).
* :func:`timeline_svg`: one strip per person across the film, a mark wherever they are on
  screen. Runs are merged to whole pixels first, so a strip has at most one rectangle per two
  pixels however many runs the person has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH = 640
GRAPH_HEIGHT = 520
ROW_HEIGHT = 16
LABEL_WIDTH = 170
FONT = "font-family:system-ui,sans-serif;font-size:11px"


@dataclass(frozen=True)
class Node:
    label: str
    screen_seconds: float


@dataclass(frozen=True)
class Edge:
    a: int  # positions in the node list
    b: int
    shared_seconds: float
    shared_frames: int


@dataclass(frozen=True)
class Strip:
    label: str
    starts: np.ndarray  # frames, runs [start, end)
    ends: np.ndarray


def colour(position: int) -> str:
    """A distinct hue per person (golden-angle steps), the same in the graph and the timeline."""
    return f"hsl({(position * 137.508) % 360:.0f},62%,48%)"


def _text(value: str) -> str:
    return escape(value, quote=True)


def _seconds(value: float) -> str:
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}:{seconds:04.1f}" if minutes else f"{seconds:.1f} s"


#: Width of one character of a label (11 px system-ui), a little generous: labels are placed
#: from this estimate so that none is cut at the picture's edge or drawn over another.
CHAR_WIDTH = 6.5
LINE_HEIGHT = 13
LABEL_GAP = 6
MAX_RADIUS = 26


@dataclass
class _Label:
    text: str
    x: float
    y: float  # baseline
    anchor: str

    @property
    def width(self) -> float:
        return len(self.text) * CHAR_WIDTH

    @property
    def left(self) -> float:
        return {"start": self.x, "end": self.x - self.width}.get(self.anchor, self.x - self.width / 2)


def _layout(count: int, width: int, height: int, longest: int) -> tuple[float, int]:
    """(ring radius, label length limit): the circle shrinks until the labels fit beside it."""
    limit = 24
    while True:
        room = limit * CHAR_WIDTH + LABEL_GAP + MAX_RADIUS + 4
        ring = min(width / 2 - room, height / 2 - MAX_RADIUS - LINE_HEIGHT - LABEL_GAP - 4)
        if ring >= min(width, height) / 4 or limit <= 8 or longest <= limit and ring >= 60:
            return max(ring, 40.0), limit
        limit -= 2


def _spread(labels: list[_Label], height: int) -> None:
    """Labels on one side, top to bottom, at least a line apart and inside the picture."""
    labels.sort(key=lambda label: label.y)
    for before, after in zip(labels, labels[1:], strict=False):
        after.y = max(after.y, before.y + LINE_HEIGHT)
    if labels and labels[-1].y > height - 3:  # pushed out at the bottom: lift the stack from there
        labels[-1].y = height - 3
        for after, before in zip(labels[::-1], labels[-2::-1], strict=False):
            before.y = min(before.y, after.y - LINE_HEIGHT)


def _place_labels(nodes: Sequence[Node], places: list[tuple[float, float, float]], radii: list[float], limit: int,
                  width: int, height: int) -> list[_Label]:
    """Each label beside its node, outwards: to the right on the right half, to the left on the left
    half, centred above the top node and below the bottom one; then spread so none overlaps."""
    labels = []
    for node, (x, y, angle), radius in zip(nodes, places, radii, strict=True):
        dx, dy = math.cos(angle), math.sin(angle)
        text = _short(node.label, limit)
        if abs(dx) < 0.05:  # straight above or below
            baseline = y - radius - LABEL_GAP if dy < 0 else y + radius + LABEL_GAP + 9
            labels.append(_Label(text, x, baseline, "middle"))
        else:
            lx = x + (radius + LABEL_GAP) * (1 if dx > 0 else -1)
            labels.append(_Label(text, lx, y + (radius + LABEL_GAP) * dy * 0.6 + 4, "start" if dx > 0 else "end"))
    for side in ("start", "end"):  # the labels above and below the circle belong to both sides
        _spread([label for label in labels if label.anchor in (side, "middle")], height)
    for label in labels:  # never past the edge
        label.x += max(0.0, 2 - label.left) - max(0.0, label.left + label.width - (width - 2))
        label.y = min(max(label.y, LINE_HEIGHT), height - 3)
    return labels


def graph_svg(nodes: Sequence[Node], edges: Sequence[Edge], width: int = WIDTH, height: int = GRAPH_HEIGHT) -> str:
    """Nodes on a circle, sized by screen time; edges weighted by shared time; labels never cut or overlapping."""
    if not nodes:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40" role="img" '
                f'aria-label="cast graph"><text x="4" y="24" style="{FONT}">nobody on screen</text></svg>')
    cx, cy = width / 2, height / 2
    ring, limit = _layout(len(nodes), width, height, max(len(n.label) for n in nodes))
    biggest = max(n.screen_seconds for n in nodes) or 1.0
    most_shared = max((e.shared_seconds for e in edges), default=0.0) or 1.0
    places = []
    for position in range(len(nodes)):
        angle = -math.pi / 2 + 2 * math.pi * position / len(nodes)
        places.append((cx + ring * math.cos(angle), cy + ring * math.sin(angle), angle))
    radii = [4 + (MAX_RADIUS - 4) * math.sqrt(node.screen_seconds / biggest) for node in nodes]
    labels = _place_labels(nodes, places, radii, limit, width, height)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="cast graph" class="momentry-cast-graph">']
    for edge in sorted(edges, key=lambda e: e.shared_seconds):
        share = edge.shared_seconds / most_shared
        (x1, y1, _), (x2, y2, _) = places[edge.a], places[edge.b]
        title = f"{nodes[edge.a].label} and {nodes[edge.b].label}: {_seconds(edge.shared_seconds)} together " \
                f"({edge.shared_frames} frames)"
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555" '
                     f'stroke-width="{0.75 + 9 * share:.2f}" stroke-opacity="{0.2 + 0.6 * share:.2f}" '
                     f'stroke-linecap="round"><title>{_text(title)}</title></line>')
    for position, (node, label, radius) in enumerate(zip(nodes, labels, radii, strict=True)):
        x, y, _ = places[position]
        title = f"{node.label}: {_seconds(node.screen_seconds)} on screen"
        parts.append(f'<g class="momentry-person"><title>{_text(title)}</title>'
                     f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour(position)}" '
                     f'stroke="#fff" stroke-width="1.5"/>'
                     f'<text x="{label.x:.1f}" y="{label.y:.1f}" text-anchor="{label.anchor}" style="{FONT}">'
                     f'{_text(label.text)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, limit: int = 24) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _pixel_runs(starts: np.ndarray, ends: np.ndarray, total_frames: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of frames → merged runs of whole pixels (at least one pixel wide each)."""
    if len(starts) == 0 or total_frames <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    left = np.floor(np.asarray(starts) * width / total_frames).astype(np.int64)
    right = np.maximum(np.ceil(np.asarray(ends) * width / total_frames).astype(np.int64), left + 1)
    order = np.argsort(left, kind="stable")
    left, right = left[order], right[order]
    reach = np.maximum.accumulate(right)
    begins = np.flatnonzero(np.r_[True, left[1:] > reach[:-1]])
    return left[begins], reach[np.r_[begins[1:] - 1, len(reach) - 1]]


def timeline_svg(strips: Sequence[Strip], total_frames: int, duration_seconds: float, width: int = WIDTH) -> str:
    """One strip per person: where in the film they are on screen."""
    bar = width - LABEL_WIDTH - 8
    height = ROW_HEIGHT * len(strips) + 22
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline per person" '
             f'class="momentry-timeline">']
    for tick in range(5):
        x = LABEL_WIDTH + bar * tick / 4
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 16}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle" style="{FONT}">'
                     f'{_text(_seconds(duration_seconds * tick / 4))}</text>')
    for row, strip in enumerate(strips):
        y = row * ROW_HEIGHT
        parts.append(f'<g class="momentry-strip"><title>{_text(strip.label)}</title>'
                     f'<text x="{LABEL_WIDTH - 6}" y="{y + 11}" text-anchor="end" style="{FONT}">'
                     f'{_text(_short(strip.label))}</text>'
                     f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{bar}" height="{ROW_HEIGHT - 6}" fill="#f2f2f2"/>')
        left, right = _pixel_runs(strip.starts, strip.ends, total_frames, bar)
        parts.extend(f'<rect x="{LABEL_WIDTH + a}" y="{y + 3}" width="{b - a}" height="{ROW_HEIGHT - 6}" '
                     f'fill="{colour(row)}"/>' for a, b in zip(left.tolist(), right.tolist(), strict=True))
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["Edge", "Node", "Strip", "colour", "graph_svg", "timeline_svg"]
