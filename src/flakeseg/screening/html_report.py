"""``report.html`` of a screening run: one self-contained page (pictures inline, no network).

Images are ranked by their best flake candidate (area x confidence of the best monolayer, then of the
best bilayer), each with its overlay thumbnail and a row per flake; the run's settings sit folded at
the top. The page has no scripts: it opens the same in any browser, offline.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GALLERY_LIMIT", "gallery_flakes", "rank_images", "render_report"]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: middle; }
th { background: #f3f3f3; } td.name, th.name, td.key { text-align: left; }
img.thumb { display: block; max-width: 320px; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #555;
          vertical-align: middle; margin-right: 0.3em; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
.none { color: #888; } .problem { color: #a00; }
#gallery { display: flex; flex-wrap: wrap; gap: 8px; }
figure.crop { margin: 0; width: 112px; font-size: 11px; line-height: 1.25; }
figure.crop img { display: block; width: 112px; height: 112px; border: 3px solid #888; }
"""

#: the most flake crops the gallery shows (the surest first); flakes.csv lists every one
GALLERY_LIMIT = 200


def rank_images(
    records: Sequence[Mapping[str, Any]], flake_classes: Sequence[str]
) -> list[Mapping[str, Any]]:
    """Records ordered best first, by what a lab picks: the image's best candidate of the first flake
    class (its area times its confidence, so one large sure monolayer beats many specks), then the best
    of the next class; area in um^2 where the pixel size is known, the same order as in pixels."""

    def best(record: Mapping[str, Any], cls: str) -> float:
        return max(
            (f["area_px"] * f["confidence"] for f in record.get("flakes", []) if f["class_name"] == cls),
            default=0.0,
        )

    def key(record: Mapping[str, Any]) -> tuple:
        return (*(-best(record, c) for c in flake_classes), record["name"])

    return sorted(records, key=key)


def gallery_flakes(records: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Every ``(record, flake)`` with a crop, the most confident first (ties: larger first)."""
    pairs = [
        (record, flake)
        for record in records
        for flake in record.get("flakes", [])
        if str(flake["flake_id"]) in (record.get("crops") or {})
    ]
    return sorted(
        pairs, key=lambda p: (-p[1]["confidence"], -p[1]["area_px"], p[0]["name"], p[1]["flake_id"])
    )


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{html.escape(color)}"></span>'


def _anchor(name: str) -> str:
    return "img-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return html.escape(str(value))


def render_report(
    records: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    flake_classes: Sequence[str],
    class_colors: Mapping[str, str],
    problems: Sequence[str] = (),
) -> str:
    """The report page as a string.

    Args:
        records: one per image: ``name``, ``source``, ``width``, ``height``, ``counts`` (flakes per
            class), ``flakes`` (rows with the :data:`flakeseg.evaluation.flakes.FLAKE_COLUMNS`), ``thumbnail``
            (a data URI) and ``overlay`` (path of the full overlay, relative to the page).
        settings: the run's settings, shown as a table.
        flake_classes: flake class names, in ranking order.
        class_colors: ``#rrggbb`` per class name.
        problems: one line per input that was skipped.
    """
    ranked = rank_images(records, flake_classes)
    totals = {c: sum(r.get("counts", {}).get(c, 0) for r in records) for c in flake_classes}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>flakeseg screening report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>flakeseg screening report</h1>",
        '<p id="summary">'
        + f"{len(records)} images; "
        + ", ".join(f"{_swatch(class_colors.get(c, '#888'))}{totals[c]} {html.escape(c)}" for c in totals)
        + " candidates"
        + (f'; <span class="problem">{len(problems)} input(s) skipped</span>' if problems else "")
        + "</p>",
        # Settings first but folded: the ranking is what a person opens the page for.
        '<details id="settings-box"><summary>Settings of this run</summary><table id="settings">',
    ]
    for key, value in settings.items():
        parts.append(
            f'<tr><td class="key">{html.escape(str(key))}</td><td class="key">{_fmt(value)}</td></tr>'
        )
    parts.append("</table></details>")

    parts.append('<h2>Images ranked by candidates</h2><table id="ranking"><tr><th>rank</th><th>overlay</th>')
    parts.append('<th class="name">image</th>')
    parts += [f"<th>{_swatch(class_colors.get(c, '#888'))}{html.escape(c)}</th>" for c in flake_classes]
    parts.append("<th>largest (px)</th><th>best confidence</th></tr>")
    for rank, record in enumerate(ranked, start=1):
        flakes = record.get("flakes", [])
        largest = max((f["area_px"] for f in flakes), default=None)
        best = max((f["confidence"] for f in flakes), default=None)
        anchor = _anchor(record["name"])
        parts.append(
            f'<tr class="ranked" data-image="{html.escape(record["name"])}"><td>{rank}</td>'
            f'<td><a href="#{anchor}"><img class="thumb" alt="overlay of {html.escape(record["name"])}" '
            f'src="{record["thumbnail"]}"></a></td>'
            f'<td class="name"><a href="#{anchor}">{html.escape(record["name"])}</a></td>'
            + "".join(f"<td>{record.get('counts', {}).get(c, 0)}</td>" for c in flake_classes)
            + f"<td>{_fmt(largest)}</td><td>{_fmt(best)}</td></tr>"
        )
    parts.append("</table>")

    gallery = gallery_flakes(records)
    if gallery:
        shown = gallery[:GALLERY_LIMIT]
        parts.append(
            "<h2>Flakes by confidence</h2><p>Every candidate cut from its overlay, the surest first"
            + (
                f" ({len(shown)} of {len(gallery)}; flakes.csv lists all)"
                if len(gallery) > len(shown)
                else ""
            )
            + '.</p><div id="gallery">'
        )
        for record, flake in shown:
            cls = flake["class_name"]
            name = record["name"]
            parts.append(
                f'<figure class="crop" data-image="{html.escape(name)}" data-class="{html.escape(cls)}" '
                f'data-confidence="{flake["confidence"]}"><a href="#{_anchor(name)}">'
                f'<img alt="{html.escape(cls)} {flake["flake_id"]} of {html.escape(name)}" '
                f'style="border-color:{html.escape(class_colors.get(cls, "#888"))}" '
                f'src="{record["crops"][str(flake["flake_id"])]}"></a>'
                f"<figcaption>{html.escape(cls)} {_fmt(flake['confidence'])}<br>{html.escape(name)} "
                f"#{flake['flake_id']}, {flake['area_px']} px</figcaption></figure>"
            )
        parts.append("</div>")

    columns = ["flake_id", "class_name", "area_px", "area_um2", "confidence", "bbox", "centroid"]
    for record in ranked:
        name = record["name"]
        parts.append(f'<section class="image" id="{_anchor(name)}">')
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(
            f"<p>{html.escape(str(record.get('source', '')))} &middot; {record.get('width')} x "
            f'{record.get("height")} px &middot; <a href="{html.escape(record.get("overlay", ""))}">'
            "full-size overlay</a></p>"
        )
        parts.append(f'<img class="thumb" alt="overlay of {html.escape(name)}" src="{record["thumbnail"]}">')
        flakes = record.get("flakes", [])
        if not flakes:
            parts.append('<p class="none">no flake candidates above the thresholds</p></section>')
            continue
        parts.append('<table class="flakes"><tr>' + "".join(f"<th>{c}</th>" for c in columns) + "</tr>")
        for flake in flakes:
            cls = flake["class_name"]
            parts.append(
                f'<tr class="flake" data-image="{html.escape(name)}" data-class="{html.escape(cls)}">'
                f"<td>{flake['flake_id']}</td>"
                f'<td class="name">{_swatch(class_colors.get(cls, "#888"))}{html.escape(cls)}</td>'
                f"<td>{flake['area_px']}</td><td>{_fmt(flake.get('area_um2'))}</td>"
                f"<td>{_fmt(flake['confidence'])}</td>"
                f"<td>{flake['bbox_x0']},{flake['bbox_y0']} &ndash; "
                f"{flake['bbox_x1']},{flake['bbox_y1']}</td>"
                f"<td>{_fmt(flake['centroid_x'])}, {_fmt(flake['centroid_y'])}</td></tr>"
            )
        parts.append("</table></section>")

    if problems:
        parts.append('<h2>Skipped inputs</h2><ul id="problems">')
        parts += [f'<li class="problem">{html.escape(p)}</li>' for p in problems]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
