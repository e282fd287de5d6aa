"""``report.html`` of a screening run: one self-contained page (pictures inline, no network).

At the top, the best candidates of each flake class across all images (what a lab picks flakes for
devices from); then the images ranked by their best candidate (area x confidence of the best monolayer,
then of the best bilayer), each with its overlay thumbnail and a row per flake; the run's settings sit
folded near the top. Areas are in um^2 when the images' pixel size is known, else in pixels. The page
has no scripts: it opens the same in any browser, offline.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_TOP",
    "GALLERY_LIMIT",
    "ReportOptions",
    "best_candidates",
    "gallery_flakes",
    "rank_images",
    "render_report",
]

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
table.best img.crop { display: block; width: 72px; height: 72px; border: 2px solid #888; }
h3 { margin: 1em 0 0.2em; }
"""

#: the most flake crops the gallery shows (the surest first); flakes.csv lists every one
GALLERY_LIMIT = 200

#: best candidates listed per flake class at the top of the page (``flakeseg predict --top``)
DEFAULT_TOP = 20


@dataclass(frozen=True)
class ReportOptions:
    """How the page presents a run, not what was found: changing them redoes no image (they are not
    part of :meth:`flakeseg.screening.screen.ScreenSettings.signature`).

    Attributes:
        top: best candidates listed per flake class at the top of the page (0: no such tables).
        min_area_um2: only flakes at least this large (um^2) enter those tables (``None``: any size);
            flakes.csv and the rest of the page keep every flake.
        pixel_size_um: um per pixel of the images, when known: areas are then shown in um^2.
            ``None``: the ``pixel_size_um`` of the run's settings, if any.
        pixel_size_source: where the pixel size came from (``"--pixel-size"``, ``"the model card"``).
    """

    top: int = DEFAULT_TOP
    min_area_um2: float | None = None
    pixel_size_um: float | None = None
    pixel_size_source: str = ""


def _score(flake: Mapping[str, Any]) -> float:
    """What a candidate is worth: its area times its confidence (one large sure flake beats many
    specks; in um^2 or in pixels, the same order within a run)."""
    return flake["area_px"] * flake["confidence"]


def rank_images(
    records: Sequence[Mapping[str, Any]], flake_classes: Sequence[str]
) -> list[Mapping[str, Any]]:
    """Records ordered best first, by what a lab picks: the image's best candidate of the first flake
    class (its area times its confidence, so one large sure monolayer beats many specks), then the best
    of the next class; area in um^2 where the pixel size is known, the same order as in pixels."""

    def best(record: Mapping[str, Any], cls: str) -> float:
        return max((_score(f) for f in record.get("flakes", []) if f["class_name"] == cls), default=0.0)

    def key(record: Mapping[str, Any]) -> tuple:
        return (*(-best(record, c) for c in flake_classes), record["name"])

    return sorted(records, key=key)


def best_candidates(
    records: Sequence[Mapping[str, Any]],
    flake_classes: Sequence[str],
    top: int = DEFAULT_TOP,
    min_area_um2: float | None = None,
) -> dict[str, list[tuple[Mapping[str, Any], Mapping[str, Any]]]]:
    """The ``top`` best ``(record, flake)`` of each flake class across all images, best first by area
    times confidence (ties: image name, flake id); with ``min_area_um2``, only flakes at least that large
    (a flake without an area in um^2 is left out).

    One list per class, in ``flake_classes`` order (monolayer first), rather than one mixed list: a lab
    picking flakes for devices hunts one thickness at a time (a monolayer for this device, a bilayer for
    that one), and in a mixed list ranked class first the bilayers would never reach a short top N,
    while ranked by size alone the thicknesses would interleave.
    """
    best: dict[str, list[tuple[Mapping[str, Any], Mapping[str, Any]]]] = {}
    for cls in flake_classes:
        pairs = [
            (record, flake)
            for record in records
            for flake in record.get("flakes", [])
            if flake["class_name"] == cls
            and (
                min_area_um2 is None
                or (flake.get("area_um2") is not None and flake["area_um2"] >= min_area_um2)
            )
        ]
        pairs.sort(key=lambda p: (-_score(p[1]), p[0]["name"], p[1]["flake_id"]))
        best[cls] = pairs[: max(top, 0)]
    return best


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


#: how the settings table names the run's settings (others: their key with spaces)
_SETTING_LABELS = {
    "checkpoint": "Model file",
    "checkpoint_sha256": "Model file SHA-256",
    "backend": "Backend",
    "min_area": "Smallest flake kept (px, --min-area)",
    "min_confidence": "Lowest confidence kept (--min-confidence)",
    "scale": "Extra resampling (--scale)",
    "pixel_size_um": "Pixel size of the images (µm/px)",
    "pixel_size_from": "Pixel size from",
    "tile": "Tile side (px)",
    "overlap": "Tile overlap",
    "save_probabilities": "Probability maps saved",
    "tta": "Test-time augmentation (8 flips/rotations)",
    "temperature": "Temperature",
    "model_pixel_size_um": "Pixel size of the training images (µm/px)",
    "model": "Model",
    "classes": "Classes",
    "inputs": "Inputs",
    "date": "Date",
    "top": "Best candidates listed per class (--top)",
    "min_area_um2": "Smallest best candidate (µm², --min-area-um2)",
}


def _label(key: str) -> str:
    if key in _SETTING_LABELS:
        return _SETTING_LABELS[key]
    text = str(key).replace("_", " ")
    return text[:1].upper() + text[1:]


def _area(flake: Mapping[str, Any], um2: bool, unit: bool = False) -> str:
    """A flake's area as the page shows it: um^2 when the pixel size is known, else pixels (``unit``:
    followed by its unit)."""
    value = flake.get("area_um2") if um2 else None
    if value is None:
        return f"{flake['area_px']:,}" + (" px" if unit or um2 else "")
    return (f"{value:,.2f}" if value < 10 else f"{value:,.1f}") + (" µm²" if unit else "")


def _area_header(um2: bool, what: str = "Area") -> str:
    return f"{what} (µm²)" if um2 else f"{what} (px)"


def _confidence(value: Any) -> str:
    return "&ndash;" if value is None else f"{float(value):.3f}"


def _box(flake: Mapping[str, Any]) -> str:
    """``(x0, y0)–(x1, y1)``: no thousands separators on coordinates, the corners apart."""
    return f"({flake['bbox_x0']}, {flake['bbox_y0']})&ndash;({flake['bbox_x1']}, {flake['bbox_y1']})"


def _centroid(flake: Mapping[str, Any]) -> str:
    return f"({float(flake['centroid_x']):.1f}, {float(flake['centroid_y']):.1f})"


BOX_HEADER = "Bounding box (x0, y0)&ndash;(x1, y1)"
CENTROID_HEADER = "Centroid (x, y)"


def _best_tables(
    records: Sequence[Mapping[str, Any]],
    flake_classes: Sequence[str],
    class_colors: Mapping[str, str],
    options: ReportOptions,
    um2: bool,
) -> list[str]:
    """The best-candidates section: a table per flake class (see :func:`best_candidates`)."""
    best = best_candidates(records, flake_classes, options.top, options.min_area_um2)
    floor = (
        f", at least {options.min_area_um2:g} µm² (--min-area-um2)"
        if options.min_area_um2 is not None
        else ""
    )
    parts = [
        '<section id="best"><h2>Best candidates</h2>'
        f"<p>The {options.top} best flakes of each class across all images{floor}, by area &times; "
        "confidence (one large sure flake before many specks); an image's name leads to its overlay and "
        "all its flakes below.</p>"
    ]
    for cls in flake_classes:
        swatch = _swatch(class_colors.get(cls, "#888"))
        parts.append(f"<h3>{swatch}{html.escape(cls)}</h3>")
        if not best[cls]:
            parts.append(f'<p class="none">no {html.escape(cls)} candidates{floor}</p>')
            continue
        parts.append(
            f'<table class="best" id="best-{_anchor(cls)[4:]}"><tr><th>Rank</th><th>Crop</th>'
            '<th class="name">Image</th><th>Flake</th><th class="name">Class</th>'
            f"<th>{_area_header(um2)}</th><th>Confidence</th><th>{CENTROID_HEADER}</th>"
            f"<th>{BOX_HEADER}</th></tr>"
        )
        for rank, (record, flake) in enumerate(best[cls], start=1):
            name, fid = record["name"], flake["flake_id"]
            crop = (record.get("crops") or {}).get(str(fid))
            picture = (
                f'<img class="crop" alt="{html.escape(cls)} {fid} of {html.escape(name)}" '
                f'style="border-color:{html.escape(class_colors.get(cls, "#888"))}" src="{crop}">'
                if crop
                else "&ndash;"
            )
            parts.append(
                f'<tr class="best" data-image="{html.escape(name)}" data-class="{html.escape(cls)}" '
                f'data-flake="{fid}"><td>{rank}</td><td><a href="#{_anchor(name)}">{picture}</a></td>'
                f'<td class="name"><a href="#{_anchor(name)}">{html.escape(name)}</a></td><td>{fid}</td>'
                f'<td class="name">{swatch}{html.escape(cls)}</td><td>{_area(flake, um2)}</td>'
                f"<td>{_confidence(flake['confidence'])}</td><td>{_centroid(flake)}</td>"
                f"<td>{_box(flake)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</section>")
    return parts


def render_report(
    records: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    flake_classes: Sequence[str],
    class_colors: Mapping[str, str],
    problems: Sequence[str] = (),
    refresh_seconds: int | None = None,
    options: ReportOptions | None = None,
    setup_flags: Sequence[str] = (),
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
        refresh_seconds: the browser reloads the page this often (``flakeseg watch``, while watching);
            ``None``: a still page.
        options: how the page presents the run (best-candidates tables, the pixel size).
        setup_flags: one line per image the setup check flags (a banner at the top).
    """
    options = options or ReportOptions()
    pixel_size = options.pixel_size_um
    if pixel_size is None and isinstance(settings.get("pixel_size_um"), int | float):
        pixel_size = settings["pixel_size_um"]
    um2 = pixel_size is not None  # the records' area_um2 came from that pixel size
    if um2:
        source = options.pixel_size_source or settings.get("pixel_size_from") or ""
        scale_note = f"Areas in µm², at {pixel_size:g} µm/px" + (
            f", from {html.escape(source)}" if source else ""
        )
    else:
        scale_note = (
            "Areas in pixels: the images' pixel size is unknown (--pixel-size gives square micrometres)"
        )
    ranked = rank_images(records, flake_classes)
    totals = {c: sum(r.get("counts", {}).get(c, 0) for r in records) for c in flake_classes}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        *([f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">'] if refresh_seconds else []),
        "<title>flakeseg screening report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>flakeseg screening report</h1>",
        '<p id="summary">'
        + f"{len(records)} images; "
        + ", ".join(f"{_swatch(class_colors.get(c, '#888'))}{totals[c]} {html.escape(c)}" for c in totals)
        + " candidates"
        + (f'; <span class="problem">{len(problems)} input(s) skipped</span>' if problems else "")
        + f'.</p><p id="pixel-size">{scale_note}.</p>',
        *(
            [
                f'<div id="setup-check" class="problem"><b>{len(setup_flags)} image(s) do not look like the '
                "model's training images</b> (setup check: their substrate colour is unlike every training "
                "image's; another oxide, lamp or camera?). Their candidates may be wrong:<ul>"
                + "".join(f"<li>{html.escape(line)}</li>" for line in setup_flags)
                + "</ul></div>"
            ]
            if setup_flags
            else []
        ),
        # Settings near the top but folded: the candidates are what a person opens the page for.
        '<details id="settings-box"><summary>Settings of this run</summary><table id="settings">',
    ]
    for key, value in settings.items():
        parts.append(
            f'<tr><td class="key">{html.escape(_label(key))}</td><td class="key">{_fmt(value)}</td></tr>'
        )
    parts.append("</table></details>")
    if options.top > 0:
        parts += _best_tables(records, flake_classes, class_colors, options, um2)

    parts.append('<h2>Images ranked by candidates</h2><table id="ranking"><tr><th>Rank</th><th>Overlay</th>')
    parts.append('<th class="name">Image</th>')
    parts += [f"<th>{_swatch(class_colors.get(c, '#888'))}{html.escape(c)}</th>" for c in flake_classes]
    parts.append(f"<th>{_area_header(um2, 'Largest')}</th><th>Best confidence</th></tr>")
    for rank, record in enumerate(ranked, start=1):
        flakes = record.get("flakes", [])
        largest_flake = max(flakes, key=lambda f: f["area_px"], default=None)
        largest = "&ndash;" if largest_flake is None else _area(largest_flake, um2)
        best = max((f["confidence"] for f in flakes), default=None)
        anchor = _anchor(record["name"])
        parts.append(
            f'<tr class="ranked" data-image="{html.escape(record["name"])}"><td>{rank}</td>'
            f'<td><a href="#{anchor}"><img class="thumb" alt="overlay of {html.escape(record["name"])}" '
            f'src="{record["thumbnail"]}"></a></td>'
            f'<td class="name"><a href="#{anchor}">{html.escape(record["name"])}</a></td>'
            + "".join(f"<td>{record.get('counts', {}).get(c, 0)}</td>" for c in flake_classes)
            + f"<td>{largest}</td><td>{_confidence(best)}</td></tr>"
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
                f"<figcaption>{html.escape(cls)} {_confidence(flake['confidence'])}<br>{html.escape(name)} "
                f"#{flake['flake_id']}, {_area(flake, um2, unit=True)}</figcaption></figure>"
            )
        parts.append("</div>")

    columns = ["Flake", "Class", *(["Area (µm²)"] if um2 else []), "Area (px)", "Confidence"]
    columns += [BOX_HEADER, CENTROID_HEADER]
    for record in ranked:
        name = record["name"]
        parts.append(f'<section class="image" id="{_anchor(name)}">')
        parts.append(f"<h2>{html.escape(name)}</h2>")
        overlay = record.get("overlay")  # none where the candidates were withheld after screening
        link = f' &middot; <a href="{html.escape(overlay)}">full-size overlay</a>' if overlay else ""
        parts.append(
            f"<p>{html.escape(str(record.get('source', '')))} &middot; {record.get('width')} x "
            f"{record.get('height')} px{link}</p>"
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
                + (f"<td>{_area(flake, um2)}</td>" if um2 else "")
                + f"<td>{flake['area_px']:,}</td><td>{_confidence(flake['confidence'])}</td>"
                f"<td>{_box(flake)}</td><td>{_centroid(flake)}</td></tr>"
            )
        parts.append("</table></section>")

    if problems:
        parts.append('<h2>Skipped inputs</h2><ul id="problems">')
        parts += [f'<li class="problem">{html.escape(p)}</li>' for p in problems]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
