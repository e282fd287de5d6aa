"""``flakeseg predict``: screen a folder of new microscope images for monolayer and bilayer flakes.

For each image: class probabilities (tiled, at the training scale), flakes (connected regions of a
flake class above ``--min-area`` and ``--min-confidence``), an overlay PNG and, on request, probability
maps. Per run: ``flakes.csv`` (one row per flake, every image), ``report.html`` (images ranked by their
candidates) and ``run.json`` (settings, model card, skipped inputs).

Every file is written atomically, and an image's record (``records/<name>.json``) is written last, so a
killed run leaves only whole files and a rerun on the same ``--out`` skips the images it finished.
Inputs are only read.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from flakeseg.data.coco import CocoImage, coco_document, mask_instances
from flakeseg.data.io import read_image
from flakeseg.errors import ConfigError, DataError, FlakesegError, UsageError
from flakeseg.evaluation.flakes import (
    FLAKE_COLUMNS,
    UNKNOWN,
    checked_listing,
    find_flakes,
    rounded_row,
)
from flakeseg.evaluation.postprocess import Postprocess
from flakeseg.inference import OXIDE_FIT
from flakeseg.inference.predictor import SCALES, Predictor, class_indices, load_predictor, optics_predictor
from flakeseg.optics.calibration import Setup
from flakeseg.optics.drift import SetupCheck, SetupVerdict, check_folder
from flakeseg.optics.substrate import estimate_background
from flakeseg.screening.html_report import DEFAULT_TOP, ReportOptions, render_report
from flakeseg.screening.inputs import IMAGE_SUFFIXES, collect_inputs
from flakeseg.screening.overlay import draw_overlay, flake_crop_uri, probability_map, thumbnail_data_uri
from flakeseg.utils.files import (
    save_image_atomic,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["IMAGE_SUFFIXES", "ScreenSettings", "collect_inputs", "run", "screen_images"]

# 2: each flake's RLE mask and crop; 3: setup_check["checked"]; 4: the colour check moves flakes
RECORD_VERSION = 4


@dataclass(frozen=True)
class ScreenSettings:
    """What decides a screening result besides the image (a rerun with other settings redoes it)."""

    checkpoint: str
    checkpoint_sha256: str
    backend: str
    min_area: int = 100
    min_confidence: float = 0.5
    scale: float = 1.0
    pixel_size_um: float | None = None
    tile: int = 0
    overlap: float = 0.25
    save_probabilities: bool = False
    tta: bool = False
    temperature: float = 1.0
    #: the setup of the images the model knows (``Setup.to_dict`` as JSON), for the setup check; ""
    setup: str = ""
    #: the crystal, for the flakes' colour check (moved to the layer class they fit, else ``unknown``); ""
    material: str = ""
    #: withhold the candidates of images the setup check flags
    strict: bool = False
    #: the blank image every image is divided by (its sha256), or ""
    flatfield_sha256: str = ""

    def signature(self) -> str:
        # the setup check's fields enter only when set, so runs without a check keep their signature
        fields = {
            k: v
            for k, v in self.__dict__.items()
            if k != "checkpoint" and not (k in ("setup", "material", "strict", "flatfield_sha256") and not v)
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def output_names(paths: Sequence[Path]) -> dict[Path, str]:
    """A file-system-safe name per input: its stem, made unique with a short hash of its path."""
    stems: dict[str, int] = {}
    for path in paths:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    names = {}
    for path in paths:
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.stem)
        if stems[path.stem] > 1:
            stem += "-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        names[path] = stem
    return names


def _source_stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _finished(record_path: Path, signature: str, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The record of an earlier run of this image with these settings, else ``None``."""
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    same = record.get("version") == RECORD_VERSION and record.get("signature") == signature
    # an image whose overlay (or saved probability maps) were deleted is screened again
    out = record_path.parent.parent
    files = [record.get("overlay"), *(record.get("probability_maps") or [])]
    whole = all(f and (out / f).is_file() for f in files)
    return record if same and whole and record.get("source_stamp") == stamp else None


def screen_one(
    predictor: Predictor, path: Path, name: str, out: Path, settings: ScreenSettings
) -> dict[str, Any]:
    """Predict, find flakes and write the outputs of one image; return its record."""
    start = time.perf_counter()
    image = read_image(path)
    probs = predictor.probabilities(image)
    card = predictor.card
    flake_ids, flakes = find_flakes(
        probs,
        card.class_names,
        class_indices(card, card.flake_classes),
        settings.min_area,
        settings.min_confidence,
        settings.pixel_size_um,
    )
    setup_check = None
    moved_from: dict[int, str] = {}  # flake id -> the network's class, for flakes the colour check moved
    if settings.setup:
        setup = Setup.from_dict(json.loads(settings.setup))
        substrate = estimate_background(image)
        ok, reason, checked = SetupCheck(setup.substrates)(substrate)
        setup_check = {"setup_ok": ok, "reason": reason, "checked": checked}
        if settings.strict and not ok:  # --strict: no candidates from an image the model does not know
            setup_check["withheld"] = len(flakes)
            flake_ids, flakes = np.zeros_like(flake_ids), []
        elif settings.material:  # each flake's colour against the substrate around the model's flakes
            flake_ids, flakes, moved_from = checked_listing(
                image,
                probs,
                card.class_names,
                class_indices(card, card.flake_classes),
                settings.min_area,
                settings.min_confidence,
                setup,
                settings.material,
                settings.pixel_size_um,
            )
    colors = dict(zip(card.class_names, card.class_colors, strict=True)) | {UNKNOWN: UNKNOWN_COLOR}
    overlay = draw_overlay(image, flake_ids, flakes, colors)
    overlay_path = out / "overlays" / f"{name}.png"
    save_image_atomic(overlay, overlay_path)
    maps = []
    if settings.save_probabilities:
        exact = out / "probabilities" / f"{name}.npy"  # every class, float32: what the predictor gave
        buffer = io.BytesIO()
        np.save(buffer, probs.astype(np.float32), allow_pickle=False)
        write_bytes_atomic(exact, buffer.getvalue())
        maps.append(str(exact.relative_to(out)))
        for cls in card.flake_classes:
            target = out / "probabilities" / f"{name}_{cls}.png"
            save_image_atomic(probability_map(probs[card.class_names.index(cls)]), target)
            maps.append(str(target.relative_to(out)))
    counts = {c: sum(f.class_name == c for f in flakes) for c in card.flake_classes}
    unknown = sum(f.class_name == UNKNOWN for f in flakes)
    # each flake's own pixels as COCO RLE, for `--coco` (labelling tools load them for correction): a
    # flake of its listed class; an unknown one of the network's, marked
    labels = probs.argmax(axis=0)
    for flake in flakes:
        if flake.class_name != UNKNOWN:
            labels[flake_ids == flake.flake_id] = card.class_names.index(flake.class_name)
    instances = mask_instances(
        labels,
        class_indices(card, card.flake_classes),
        scores={f.flake_id: f.row()["confidence"] for f in flakes},  # as flakes.csv has it
        instance_ids=flake_ids,
    )
    unknown_ids = {f.flake_id for f in flakes if f.class_name == UNKNOWN}
    for instance in instances:  # where the colour says otherwise than the network, the attributes tell
        attributes = instance.get("attributes", {})
        if attributes.get("flake_id") in unknown_ids:
            attributes[UNKNOWN] = True
        elif attributes.get("flake_id") in moved_from:
            attributes["network_class"] = moved_from[attributes["flake_id"]]
    return {
        "version": RECORD_VERSION,
        "name": name,
        "source": str(path),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "counts": counts,
        "unknown": unknown,
        "flakes": [f.row() for f in flakes],
        "overlay": str(overlay_path.relative_to(out)),
        "instances": instances,
        "crops": {str(f.flake_id): flake_crop_uri(overlay, f) for f in flakes},
        "probability_maps": maps,
        "thumbnail": thumbnail_data_uri(overlay),
        "setup_check": setup_check,
        "seconds": round(time.perf_counter() - start, 3),
    }


#: overlay colour of the flakes whose colour fits no layer class (:data:`~flakeseg.evaluation.flakes.UNKNOWN`)
UNKNOWN_COLOR = "#9a9a9a"


def screen_images(
    predictor: Predictor,
    paths: Sequence[Path],
    out: Path,
    settings: ScreenSettings,
    problems: Sequence[str] = (),
    console: Console | None = None,
) -> dict[str, Any]:
    """Screen ``paths`` into ``out``; images finished by an earlier run with these settings are skipped.

    Returns:
        a summary: ``records`` (one per screened image, in input order), ``problems`` (one line per
        skipped input), ``done`` / ``skipped`` / ``failed`` counts.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob(".*.tmp"):  # temporary files of a run killed while writing
        stale.unlink(missing_ok=True)
    signature = settings.signature()
    names = output_names(paths)
    records: list[dict[str, Any]] = []
    problems = list(problems)
    reused = 0
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("screening", total=len(paths), current="")
        for path in paths:
            name = names[path]
            progress.update(task, current=path.name)
            record_path = out / "records" / f"{name}.json"
            try:
                stamp = _source_stamp(path)
                record = _finished(record_path, signature, stamp)
                if record is not None:
                    reused += 1
                else:
                    record = screen_one(predictor, path, name, out, settings)
                    record.update(signature=signature, source_stamp=stamp)
                    write_json_atomic(record_path, record)  # last: the mark of a finished image
                records.append(record)
                if (record.get("setup_check") or {}).get("setup_ok") is False:
                    note = setup_line(record)
                    progress.console.print(f"[yellow]setup check[/yellow] {note}", highlight=False)
            except (FlakesegError, OSError) as exc:
                line = str(exc).splitlines()[0] if str(exc) else f"{path}: {type(exc).__name__}"
                problems.append(line if str(path) in line else f"{path}: {line}")
                progress.console.print(f"[red]skipped[/red] {problems[-1]}", highlight=False)
            progress.advance(task)
    return {
        "records": records,
        "problems": problems,
        "done": len(records) - reused,
        "skipped": reused,
        "failed": len(problems),
    }


def judge_folder(summary: dict[str, Any], strict: bool) -> dict[str, Any]:
    """``summary`` with the setup check of its images judged as one folder
    (:func:`~flakeseg.optics.drift.check_folder`): when too many are flagged for images of the model's
    own microscope, every image is, and ``strict`` withholds the candidates of those flagged only now
    (from the run's outputs; their record files and overlays stay as screened, so a later run that
    judges otherwise shows them). ``folder``: the folder's line, or ``None`` when it passes."""
    records = summary["records"]
    checked = [i for i, r in enumerate(records) if r.get("setup_check")]
    before = [SetupVerdict(*(records[i]["setup_check"][k] for k in SetupVerdict._fields)) for i in checked]
    after, folder = check_folder(before)
    judged = list(records)
    for i, old, new in zip(checked, before, after, strict=True):
        if new == old:
            continue
        check = {**records[i]["setup_check"], "setup_ok": False, "reason": new.reason}
        record = judged[i] = {**records[i], "setup_check": check}
        if strict:
            check["withheld"] = len(record["flakes"])
            record.update(
                flakes=[],
                instances=[],
                crops={},
                counts=dict.fromkeys(record["counts"], 0),
                unknown=0,
                thumbnail=_plain_thumbnail(record),
                overlay="",  # the overlay file shows the candidates: no link to it
            )
    return {**summary, "records": judged, "folder": folder}


def _plain_thumbnail(record: dict[str, Any]) -> str:
    """The thumbnail of an image whose candidates are withheld: the image without them ("" if it is gone).
    Kept per source file and stamp: ``watch`` judges the folder anew at every write."""
    key = (record["source"], json.dumps(record.get("source_stamp"), sort_keys=True))
    if key not in _PLAIN_THUMBNAILS:
        try:
            image = read_image(Path(record["source"]))
            thumbnail = thumbnail_data_uri(draw_overlay(image, np.zeros(image.shape[:2], np.int32), [], {}))
        except (FlakesegError, OSError):
            return ""
        _PLAIN_THUMBNAILS[key] = thumbnail
    return _PLAIN_THUMBNAILS[key]


_PLAIN_THUMBNAILS: dict[tuple[str, str], str] = {}


def coco_predictions(
    records: Sequence[dict[str, Any]], class_names: Sequence[str], flake_classes: Sequence[int]
):
    """The predicted flakes of ``records`` as a COCO document: one instance per flake (RLE mask,
    ``category_id`` its class index, ``score`` its confidence, ``area`` in pixels, ``attributes.flake_id``
    its row in flakes.csv); ``file_name`` relative to the images' common folder (``info.image_root``)."""
    import os

    sources = [Path(r["source"]).resolve() for r in records]
    root = Path(os.path.commonpath([p.parent for p in sources])) if sources else Path.cwd()
    document = coco_document(
        [
            CocoImage(str(p.relative_to(root)), int(r["height"]), int(r["width"]))
            for p, r in zip(sources, records, strict=True)
        ],
        [r.get("instances") or [] for r in records],
        class_names,
        flake_classes,
        "flake candidates predicted by flakeseg predict",
    )
    document["info"]["image_root"] = str(root)
    return document


def write_run_outputs(
    out: Path,
    summary: dict[str, Any],
    predictor: Predictor,
    settings: dict[str, Any],
    coco: Path | None = None,
    refresh_seconds: int | None = None,
    report: ReportOptions | None = None,
    keep_earlier: bool = True,
) -> bool:
    """``flakes.csv``, ``report.html``, ``run.json`` and (``coco``) the COCO file of a run, from its
    image records; ``refresh_seconds``: the report reloads itself this often (``flakeseg watch``);
    ``report``: how the page presents the run (default: from ``settings``, see :func:`report_options`).

    A run that screened nothing (every input skipped) writes nothing over an earlier run's outputs in
    ``out`` (``keep_earlier``; a watch that wrote them itself passes ``False``): returns ``False`` then,
    ``True`` when the files were written."""
    if keep_earlier and not summary["records"] and (out / "run.json").exists():
        return False
    card = predictor.card
    if coco is not None:
        document = coco_predictions(
            summary["records"], card.class_names, class_indices(card, card.flake_classes)
        )
        write_text_atomic(coco, json.dumps(document))
    checked = any(r.get("setup_check") for r in summary["records"])
    rows = [
        {
            "image": r["name"],
            "source": r["source"],
            **rounded_row({k: f.get(k) for k in FLAKE_COLUMNS}),
            **({"setup_ok": (r.get("setup_check") or {}).get("setup_ok", "")} if checked else {}),
        }
        for r in summary["records"]
        for f in r["flakes"]
    ]
    columns = ["image", "source", *FLAKE_COLUMNS, *(["setup_ok"] if checked else [])]
    write_csv_atomic(out / "flakes.csv", rows, columns=columns)
    colors = dict(zip(card.class_names, card.class_colors, strict=True))
    problems = summary["problems"]
    page = render_report(
        summary["records"],
        settings,
        card.flake_classes,
        colors,
        problems,
        refresh_seconds=refresh_seconds,
        options=report or report_options(settings),
        setup_flags=[
            setup_line(r) for r in summary["records"] if (r.get("setup_check") or {}).get("setup_ok") is False
        ],
    )
    write_text_atomic(out / "report.html", page)
    write_json_atomic(
        out / "run.json",
        {
            "settings": settings,
            "model_card": {k: v for k, v in card.__dict__.items()},
            "images": [r["name"] for r in summary["records"]],
            "flakes": len(rows),
            "problems": summary["problems"],
            "setup_check": [
                {"image": r["name"], **r["setup_check"]} for r in summary["records"] if r.get("setup_check")
            ],
        },
    )
    return True


def setup_line(record: dict[str, Any]) -> str:
    """One line for an image the setup check flags: its name, why, and what ``--strict`` withheld."""
    check = record.get("setup_check") or {}
    withheld = check.get("withheld")
    tail = f"; {withheld} candidates withheld (--strict)" if withheld is not None else ""
    return f"{record['name']}: {check.get('reason', '')}{tail}"


def resolve_scale(args: argparse.Namespace, model_pixel_size: float | None) -> tuple[float, float | None]:
    """The resampling factor and the model pixel size used, from ``--scale`` and the pixel sizes; the
    factor within :data:`~flakeseg.inference.predictor.SCALES`."""
    for key in ("scale", "pixel_size", "model_pixel_size"):
        value = getattr(args, key)
        if value is not None and not 0 < value < math.inf:
            raise ConfigError(f"--{key.replace('_', '-')}: must be a number > 0, got {value}")
    model_px = args.model_pixel_size or model_pixel_size
    if args.scale is not None and args.pixel_size and args.model_pixel_size:
        raise ConfigError(
            "--scale with --pixel-size and --model-pixel-size: the pixel sizes give the scale; drop one"
        )
    scale, source = 1.0, ""
    if args.scale is not None:
        scale, source = float(args.scale), "--scale"
    elif args.pixel_size and model_px:
        scale, source = float(args.pixel_size) / float(model_px), "--pixel-size / the model's pixel size"
    if not SCALES[0] <= scale <= SCALES[1]:
        raise ConfigError(f"{source}: a resize by {scale:g}, outside [{SCALES[0]:g}, {SCALES[1]:g}]")
    return scale, model_px


def resolve_pixel_size(
    args: argparse.Namespace, scale: float, model_pixel_size: float | None
) -> tuple[float | None, str]:
    """The images' um per pixel and where it came from: ``--pixel-size``, else the training images'
    (``--model-pixel-size`` or the model card's) when these images are at the model's magnification
    (scale 1: neither ``--scale`` nor ``--pixel-size`` says otherwise); else ``(None, "")``."""
    if args.pixel_size:
        return float(args.pixel_size), "--pixel-size"
    if model_pixel_size and scale == 1.0:
        source = "--model-pixel-size" if args.model_pixel_size else "the model card"
        return float(model_pixel_size), source
    return None, ""


def report_options(settings: dict[str, Any]) -> ReportOptions:
    """How the report presents a run, from its settings as :func:`prepare` shows them (``top``,
    ``min_area_um2``, ``pixel_size_um``, ``pixel_size_from``): report settings, not screening ones."""
    top = settings.get("top")
    return ReportOptions(
        top=DEFAULT_TOP if top is None else int(top),
        min_area_um2=settings.get("min_area_um2"),
        pixel_size_um=settings.get("pixel_size_um"),
        pixel_size_source=settings.get("pixel_size_from") or "",
    )


def prepare(args: argparse.Namespace) -> tuple[Predictor, ScreenSettings, dict[str, Any]]:
    """The predictor, the settings and the settings as the report shows them, from the options of
    ``flakeseg predict`` (and ``flakeseg watch``); the options are checked before the model loads."""
    if args.min_area is not None and args.min_area < 0:
        raise ConfigError(f"--min-area: must be >= 0, got {args.min_area}")
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence: must be in [0, 1], got {args.min_confidence}")
    if not 0.0 <= args.overlap <= 0.9:
        raise ConfigError(f"--overlap: must be in [0, 0.9], got {args.overlap}")
    if not args.temperature > 0:
        raise ConfigError(f"--temperature: must be > 0, got {args.temperature}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    top, min_area_um2 = getattr(args, "top", DEFAULT_TOP), getattr(args, "min_area_um2", None)
    if top < 0:
        raise ConfigError(f"--top: must be >= 0, got {top}")
    if min_area_um2 is not None and not min_area_um2 >= 0:
        raise ConfigError(f"--min-area-um2: must be >= 0, got {min_area_um2}")
    options = {"tile": args.tile, "overlap": args.overlap, "tta": args.tta, "temperature": args.temperature}
    if getattr(args, "material", None) is not None:  # zero labels: the optics, no checkpoint
        per_image = args.oxide == OXIDE_FIT
        predictor = optics_predictor(
            args.material,
            args.setup,
            None if per_image else args.oxide,
            fit_oxide=True if per_image else None,
            tile=args.tile,
            overlap=args.overlap,
        )
        # the model's whole config (material, setup, oxide) is what a rerun must match
        sha = hashlib.sha256(json.dumps(predictor.card.model, sort_keys=True).encode()).hexdigest()
        args.checkpoint = Path(predictor.card.source)
    else:
        sha = file_sha256(args.checkpoint) if args.checkpoint.is_file() else ""
        predictor = load_predictor(
            args.checkpoint,
            backend=args.backend,
            onnx_path=args.out / f"model-{sha[:12]}.onnx",
            threads=args.threads,
            device=args.device,
            **options,
        )
    scale, model_px = resolve_scale(args, predictor.card.pixel_size_um)
    predictor.scale = scale
    pixel_size, pixel_source = resolve_pixel_size(args, scale, model_px)
    if min_area_um2 is not None and pixel_size is None:
        why = "unknown with --scale alone" if args.scale is not None else "and the model card carries none"
        raise UsageError(f"--min-area-um2: needs the images' pixel size, {why}; give --pixel-size (um/px)")
    # which regions are listed as flakes: as asked, else as the card says (chosen on CV), else defaults
    card_post = Postprocess.from_card(predictor.card.postprocess)
    min_area = card_post.min_area if args.min_area is None else args.min_area
    min_confidence = card_post.min_confidence if args.min_confidence is None else args.min_confidence
    flatfield = getattr(args, "flatfield", None)
    if flatfield is not None:
        from flakeseg.optics.substrate import flat_field_from_blank

        predictor.flatfield = flat_field_from_blank(read_image(flatfield))
    elif getattr(args, "setup", None) is not None:  # the lab's microscope's field, if calibrated with one
        from flakeseg.optics.calibration import Setup
        from flakeseg.optics.substrate import expand_flat_field

        lab_field = Setup.load(args.setup).flat_field
        if lab_field is not None:
            predictor.flatfield = expand_flat_field(lab_field)
    check_setup, check_source = setup_to_check(args, predictor)
    check_material = getattr(args, "material", None) or (
        check_setup.fitted_on.get("material") if check_setup else ""
    )
    settings = ScreenSettings(
        checkpoint=str(args.checkpoint),
        checkpoint_sha256=sha,
        backend=predictor.backend.name,
        min_area=min_area,
        min_confidence=min_confidence,
        scale=scale,
        pixel_size_um=pixel_size,  # part of the signature: it changes the flakes' rows
        tile=predictor.tile,
        overlap=args.overlap,
        save_probabilities=args.save_probabilities,
        tta=args.tta,
        temperature=args.temperature,
        setup=json.dumps(check_setup.to_dict(), sort_keys=True) if check_setup is not None else "",
        material=check_material if check_setup is not None else "",
        strict=bool(getattr(args, "strict", False)),
        flatfield_sha256=file_sha256(flatfield) if flatfield is not None else "",
    )
    shown = {
        **{k: v for k, v in settings.__dict__.items() if k != "setup"},
        "setup check": check_source,
        "model_pixel_size_um": model_px,
        "pixel_size_from": pixel_source or None,
        # report settings: how the page presents the run, not part of the signature
        "top": top,
        "min_area_um2": min_area_um2,
        "model": predictor.card.data
        if getattr(args, "material", None)
        else f"{predictor.card.model.get('name')} trained on {predictor.card.data or '?'}",
        "classes": ", ".join(predictor.card.class_names),
        "resample (training scale x --scale)": round(predictor.resample, 4),
        "inputs": " ".join(args.inputs),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return predictor, settings, shown


def setup_to_check(args: argparse.Namespace, predictor: Predictor) -> tuple[Any, str]:
    """The setup whose images new images are checked against, and a line saying which: ``--setup``
    (with ``--material`` the setup the optics runs on), else the model card's (calibrated on its
    training images), else the shipped ``paper_<data>`` of the model's training data when there is
    one; ``(None, why not)`` otherwise."""
    from flakeseg.optics.calibration import SHIPPED_DIR, Setup, shipped_setup

    if args.setup is not None:
        setup, source = Setup.load(args.setup), str(args.setup)
    elif getattr(args, "material", None) is not None:
        setup, source = shipped_setup(), "the shipped paper_mos2 setup"
    elif predictor.card.setup:
        setup = Setup.from_dict(predictor.card.setup, f"{predictor.card.source} (model card)")
        source = "the model card's setup (calibrated on its training images)"
    elif predictor.card.data and (SHIPPED_DIR / f"paper_{predictor.card.data}.yaml").is_file():
        setup, source = (
            shipped_setup(f"paper_{predictor.card.data}"),
            f"the shipped paper_{predictor.card.data} setup",
        )
    else:
        return (
            None,
            f"none: no setup known for data '{predictor.card.data or '?'}' (--setup: flakeseg calibrate's)",
        )
    if not setup.substrates:
        return (
            None,
            f"none: {source} lists no substrate colours (made before flakeseg calibrate recorded them)",
        )
    return setup, f"against {source} ({len(setup.substrates)} images)"


def summary_line(
    summary: dict[str, Any], flake_classes: Sequence[str], out: Path, coco: Path | None, written: bool = True
) -> str:
    """The one line a run ends with: images, candidates per class, skipped inputs, where the report is
    (``written``: whether this run wrote it, or left an earlier run's in place)."""
    if not written:
        return (
            f"nothing screened; {summary['failed']} inputs skipped. The earlier run's outputs in {out} "
            "are kept as they were"
        )
    counts = {c: sum(r["counts"].get(c, 0) for r in summary["records"]) for c in flake_classes}
    unknown = sum(r.get("unknown", 0) for r in summary["records"])
    return (
        f"{len(summary['records'])} images ({summary['done']} screened, {summary['skipped']} already done), "
        + ", ".join(f"{n} {c}" for c, n in counts.items())
        + " candidates"
        + (f" and {unknown} {UNKNOWN} (colour fits no layer class)" if unknown else "")
        + f"; {summary['failed']} inputs skipped. Report: {out / 'report.html'}"
        + (f"; COCO: {coco}" if coco else "")
    )


def run(args: argparse.Namespace, paths: Sequence[Path], problems: Sequence[str], console: Console) -> int:
    """Screen ``paths`` (from :func:`collect_inputs`; ``problems``: the inputs already skipped) with the
    options of ``flakeseg predict``."""
    if not paths:  # nothing to screen: no model loaded, no empty report written
        raise DataError(list(problems) or "no images given")
    predictor, settings, shown = prepare(args)
    summary = judge_folder(
        screen_images(predictor, paths, args.out, settings, problems, console), settings.strict
    )
    if summary["folder"]:
        flagged = sum(not (r.get("setup_check") or {}).get("setup_ok", True) for r in summary["records"])
        console.print(
            f"[yellow]setup check[/yellow] {summary['folder']}: {flagged} images flagged", highlight=False
        )
    written = write_run_outputs(args.out, summary, predictor, shown, coco=args.coco)
    line = summary_line(summary, predictor.card.flake_classes, args.out, args.coco, written)
    console.print(line, highlight=False)
    return 0 if summary["records"] and not summary["problems"] else 1
