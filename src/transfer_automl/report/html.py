"""HTML assembly: one self-contained page (inline CSS, PNGs as base64 data URIs, no scripts)."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1320px;
       color: #1d1d1f; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 13px; } .meta code { font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.config { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; max-width: 760px; }
figure { margin: 8px 0; } figcaption { font-size: 12px; color: #555; max-width: 1100px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.grid figure { margin: 0; }
.omitted { color: #8a6d00; background: #fff8e1; padding: 6px 10px; border-left: 3px solid #f0c000; font-size: 13px; }
"""


def number(value: float, digits: int = 4) -> str:
    """How every accuracy is printed (tests read the numbers back with float())."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


@dataclass
class Page:
    title: str
    parts: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)  # ids of the sections shown
    omitted: dict[str, str] = field(default_factory=dict)  # section id -> why it is not shown
    figures: int = 0

    def heading(self, section: str, text: str) -> None:
        self.sections.append(section)
        self.parts.append(f'<h2 id="{escape(section)}">{escape(text)}</h2>')

    def paragraph(self, text: str, css: str = "meta") -> None:
        self.parts.append(f'<p class="{css}">{text}</p>')

    def omit(self, section: str, title: str, why: str) -> None:
        """A section that cannot be drawn still appears, saying why, so a reader never wonders."""
        self.omitted[section] = why
        self.parts.append(f'<h2 id="{escape(section)}">{escape(title)}</h2>'
                          f'<p class="omitted" data-omitted="{escape(section)}">Not shown: {escape(why)}</p>')

    def figure(self, png: bytes, alt: str, caption: str = "") -> str:
        self.figures += 1
        data = base64.b64encode(png).decode("ascii")
        cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
        return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'

    def add_figure(self, png: bytes, alt: str, caption: str = "") -> None:
        self.parts.append(self.figure(png, alt, caption))

    def grid(self, figures: Sequence[str]) -> None:
        self.parts.append('<div class="grid">' + "".join(figures) + "</div>")

    def table(self, table_id: str, header: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> None:
        """`rows` of (css class, already-escaped html) cells."""
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f'<td class="{css}">{cell}</td>' for css, cell in row) + "</tr>"
                       for row in rows)
        self.parts.append(f'<table id="{escape(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{escape(self.title)}</title><style>{_CSS}</style></head><body>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")
