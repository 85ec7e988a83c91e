"""Building blocks of the HTML report: escaping, number formatting, tables, lists, embedded images, the CSS."""

from __future__ import annotations

import base64
import html
import math

STYLE = """
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1.2em}dd{margin:0}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;margin:0;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:1.5em}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:1em 1.4em;margin:1.2em 0}
h1{margin:.2em 0}h2{margin-top:.2em;border-bottom:1px solid #e4e7ec;padding-bottom:.3em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.6em 0;font-size:14px}
th,td{border-bottom:1px solid #e4e7ec;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f0f2f5}td.number{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eaf6ea;font-weight:600}.warn{background:#fff6e0;border-left:4px solid #e0a000;padding:.5em 1em}
.muted{color:#5b6474}figure{margin:.8em 0}img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f0f2f5;padding:.7em 1em;overflow-x:auto;border-radius:4px}dt{font-weight:600}
"""


class _Html(str):
    """Markup built here (already escaped): table cells and list items of this type are not escaped again."""


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _format(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        small = value != 0 and abs(value) < 10 ** -digits
        return (f"{value:.2g}" if small else f"{value:.{digits}f}") if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v, digits) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format(v, digits)}" for k, v in value.items())
    return str(value)


def _cell(value) -> str:
    if isinstance(value, _Html):
        return f"<td>{value}</td>"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td{' class=number' if number else ''}>{_escape(_format(value))}</td>"


def _table(headers, rows, best_rows=()) -> str:
    head = "".join(f"<th>{_escape(h)}</th>" for h in headers)
    body = "".join(f"<tr{' class=best' if i in best_rows else ''}>{''.join(_cell(v) for v in row)}</tr>"
                   for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _items(values, ordered: bool = False) -> str:
    tag = "ol" if ordered else "ul"
    items = "".join(f"<li>{v if isinstance(v, _Html) else _escape(v)}</li>" for v in values)
    return f"<{tag}>{items}</{tag}>" if items else ""


def _pairs(pairs) -> str:
    shown = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    return "<dl>" + "".join(f"<dt>{_escape(k)}</dt><dd>{v if isinstance(v, _Html) else _escape(_format(v))}</dd>"
                            for k, v in shown) + "</dl>" if shown else ""


def _image(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_escape(alt)}"></figure>'


def _warnings(values) -> str:
    return "".join(f'<p class="warn">{_escape(v)}</p>' for v in values or [])
