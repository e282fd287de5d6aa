"""Flake-level truth: how many listed flakes are real (precision), how many real flakes are listed
(recall), and their F1 and COCO-style AP, by one-to-one IoU matching of flake instances.

A screening lab reads a list of flakes. Region accuracy counts only ground-truth regions, so a map
that calls every pixel "monolayer" wins it; here every predicted flake that matches no true flake is
a false alarm, so a constant map scores 0.

- **Predicted flakes** are what ``flakeseg predict`` lists (:func:`~flakeseg.evaluation.flakes.find_flakes`:
  4-connected regions of the arg-max map, kept from ``min_area`` pixels and ``min_confidence``), each
  scored by its mean class probability.
- **True flakes** are the 4-connected regions of each flake class in the labels after
  :func:`clean_labels` (closing the labels' 1-px holes and gaps, nothing else).
- **Matching** is COCOeval's, per image and class: predictions in order of confidence each take the
  unmatched true flake of highest IoU at or above the threshold. A size floor ignores true flakes
  under it, and a prediction under it that matches nothing, or that matches an ignored flake, is
  ignored rather than counted false (COCO's area-range rule).
- Everything is measured at the images' stored resolution, whatever scale the model ran at.

:func:`match_flakes` is the functional form (one image); :class:`FlakeScores` accumulates images (and
merges folds) and computes the pooled scores; :class:`ImageFlakes` overlaps an image once for any number
of post-processing settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.evaluation.flakes import class_regions

__all__ = [
    "DEVICE_FLOOR_PX",
    "FLOORS",
    "IOU_THRESHOLDS",
    "FlakeScores",
    "ImageFlakes",
    "MatchRecord",
    "average_precision",
    "clean_labels",
    "match_flakes",
]

#: every flake from this many pixels (``predict``'s default ``--min-area``)
ALL_FLOOR_PX = 100
#: device-sized flakes: 25 um^2 on the graphene images (0.204 um per pixel at half size, from their scale bar)
DEVICE_FLOOR_PX = 600
#: key suffix -> size floor in pixels at the stored resolution
FLOORS: dict[str, int] = {"": ALL_FLOOR_PX, "_device": DEVICE_FLOOR_PX}
#: key suffix -> IoU threshold of a match
IOU_THRESHOLDS: dict[str, float] = {"": 0.5, "_iou25": 0.25}
#: COCO's 101 recall points
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: the opposite neighbour pairs (dy, dx) that sandwich a 1-px hole or gap: left/right and up/down
#: (diagonal pairs would also fill the corners of wider holes and the inner corner of an L)
_OPPOSITE = ((0, 1), (1, 0))


def clean_labels(mask: np.ndarray, flake_classes: Sequence[int], background: int = 0) -> np.ndarray:
    """A copy of ``mask`` whose flake classes have their 1-px holes and 1-px gaps closed.

    A ``background`` pixel becomes flake class ``c`` when two opposite neighbours of it (left and
    right, or above and below) are of class ``c``, and it is not so for another flake class: a
    1-px hole or a 1-px wide gap (of any direction, a diagonal staircase too); 2 px and wider stay.
    Pixels of any other class (another flake class; thick flakes folded into the background are
    background here) and ``IGNORE_INDEX`` never change. The labels are speckled with 1-px holes, so
    without this one flake counts as many.
    """
    out = mask.copy()
    claimed = np.zeros(mask.shape, np.int16)
    owner = np.zeros(mask.shape, mask.dtype)
    height, width = mask.shape
    for cls in flake_classes:
        padded = np.pad(mask == cls, 1)
        sandwiched = np.zeros(mask.shape, bool)
        for dy, dx in _OPPOSITE:
            before = padded[1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]
            after = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            sandwiched |= before & after
        gain = sandwiched & (mask == background)
        claimed += gain
        owner[gain] = cls
    fill = claimed == 1
    out[fill] = owner[fill]
    return out


@dataclass
class MatchRecord:
    """The matches of one class, at one size floor and one IoU threshold, over any number of images.

    Attributes:
        scores: confidence of each counted prediction (ignored ones are left out).
        matched: whether that prediction matched a counted true flake.
        truths: how many counted true flakes there were.
    """

    scores: list[float] = field(default_factory=list)
    matched: list[bool] = field(default_factory=list)
    truths: int = 0

    def extend(self, other: MatchRecord) -> None:
        self.scores += other.scores
        self.matched += other.matched
        self.truths += other.truths

    @property
    def tp(self) -> int:
        return int(sum(self.matched))

    @property
    def fp(self) -> int:
        return len(self.matched) - self.tp

    @property
    def fn(self) -> int:
        return self.truths - self.tp

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": [round(float(s), 6) for s in self.scores],
            "matched": self.matched,
            "truths": self.truths,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatchRecord:
        return cls(list(map(float, data["scores"])), list(map(bool, data["matched"])), int(data["truths"]))


def _instances(labels: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    regions, count = ndimage.label(labels)
    return regions, count, np.bincount(regions.ravel(), minlength=count + 1)


@dataclass(frozen=True)
class _ClassCandidates:
    """One class of one image: every predicted region (in ``find_flakes``' order), the true flakes, and
    the IoU of each pair, so that any post-processing is a choice of rows."""

    areas: np.ndarray  # the predicted regions' areas
    confidence: np.ndarray  # their mean probabilities (what min_confidence filters)
    iou: np.ndarray  # predicted regions x true flakes
    true_areas: np.ndarray  # true flake areas, index 0 unused


@dataclass(frozen=True)
class ImageFlakes:
    """An image's predicted flake candidates and true flakes, overlapped once.

    :meth:`matches` then gives the matches of the flakes ``predict`` lists with any ``min_area`` and
    ``min_confidence`` (dropping a region never changes another), so choosing a post-processing on
    many settings costs one labelling and one overlap per image."""

    class_names: tuple[str, ...]
    by_class: Mapping[int, _ClassCandidates]

    @classmethod
    def of(
        cls,
        probabilities: np.ndarray,
        mask: np.ndarray,
        class_names: Sequence[str],
        flake_classes: Sequence[int],
        clean: bool = True,
    ) -> ImageFlakes:
        """``probabilities``: ``C x H x W`` at the mask's resolution; ``mask``: ``H x W`` class indices
        (``IGNORE_INDEX`` pixels belong to no true flake); ``clean``: close the labels' 1-px holes and
        gaps first (:func:`clean_labels`)."""
        if probabilities.shape[1:] != mask.shape:
            raise ValueError(f"probabilities {probabilities.shape[1:]} and mask {mask.shape} differ in size")
        predicted_regions = class_regions(probabilities, class_names, flake_classes)
        truth = clean_labels(mask, flake_classes) if clean else mask
        by_class = {}
        for c, predicted in predicted_regions.items():
            true_regions, n_true, true_areas = _instances((truth == c) & (truth != IGNORE_INDEX))
            n_pred = len(predicted.areas) - 1
            pair = predicted.regions.astype(np.int64) * (n_true + 1) + true_regions
            inter = np.bincount(pair.ravel(), minlength=(n_pred + 1) * (n_true + 1))
            inter = inter.reshape(n_pred + 1, n_true + 1)[predicted.order][:, 1:].astype(np.float64)
            areas = predicted.areas[predicted.order]
            union = areas[:, None] + true_areas[None, 1:] - inter
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            by_class[c] = _ClassCandidates(areas, predicted.confidence[predicted.order], iou, true_areas)
        return cls(tuple(class_names), by_class)

    def matches(
        self,
        min_area: int = 0,
        min_confidence: float = 0.0,
        floors: Mapping[str, int] = FLOORS,
        thresholds: Mapping[str, float] = IOU_THRESHOLDS,
    ) -> dict[tuple[str, str, str], MatchRecord]:
        """``{(class name, floor suffix, threshold suffix): MatchRecord}`` of the flakes kept from
        ``min_area`` pixels and ``min_confidence`` (``predict``'s post-processing)."""
        out: dict[tuple[str, str, str], MatchRecord] = {}
        for c, found in self.by_class.items():
            keep = (found.areas >= min_area) & (found.confidence >= min_confidence)
            # a listed flake's score is its confidence as find_flakes rounds it
            scores = np.array([round(float(v), 4) for v in found.confidence[keep]], np.float64)
            for floor_key, floor in floors.items():
                for thr_key, threshold in thresholds.items():
                    out[(self.class_names[c], floor_key, thr_key)] = _match_one_class(
                        found.iou[keep], found.areas[keep], scores, found.true_areas, floor, threshold
                    )
        return out


def _match_one_class(
    iou: np.ndarray,
    pred_areas: np.ndarray,
    pred_scores: np.ndarray,
    true_areas: np.ndarray,
    floor: int,
    threshold: float,
) -> MatchRecord:
    """COCOeval's ``evaluateImg`` for one image and class (area range ``[floor, inf)``, no crowds):
    ``iou`` of each prediction (rows, in ``find_flakes``' order) with each true flake."""
    n_pred, n_true = len(pred_areas), len(true_areas) - 1
    true_ignored = true_areas[1:] < floor
    record = MatchRecord(truths=int((~true_ignored).sum()))
    if n_pred == 0:
        return record
    # COCO visits counted true flakes before ignored ones and predictions by descending score
    true_order = np.argsort(true_ignored, kind="mergesort")
    taken = np.zeros(n_true, bool)
    lowest = min(threshold, 1 - 1e-10)
    reaches = (iou >= lowest).any(axis=1)  # most predictions (specks) overlap no true flake enough
    for p in np.argsort(-pred_scores, kind="mergesort"):
        if not reaches[p]:
            if pred_areas[p] >= floor:
                record.scores.append(float(pred_scores[p]))
                record.matched.append(False)
            continue
        best, best_iou = -1, lowest
        for t in true_order:
            if taken[t]:
                continue
            if best > -1 and not true_ignored[best] and true_ignored[t]:
                break  # a counted match is never traded for an ignored one
            if iou[p, t] < best_iou:
                continue
            best, best_iou = t, iou[p, t]
        if best > -1:
            taken[best] = True
            if true_ignored[best]:
                continue  # matched an ignored flake: ignored
            record.scores.append(float(pred_scores[p]))
            record.matched.append(True)
        elif pred_areas[p] >= floor:
            record.scores.append(float(pred_scores[p]))
            record.matched.append(False)
    return record


def match_flakes(
    probabilities: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    flake_classes: Sequence[int],
    min_area: int = 0,
    min_confidence: float = 0.0,
    floors: Mapping[str, int] = FLOORS,
    thresholds: Mapping[str, float] = IOU_THRESHOLDS,
    clean: bool = True,
) -> dict[tuple[str, str, str], MatchRecord]:
    """The matches of one image's predicted flakes with its true flakes.

    Args:
        probabilities: ``C x H x W`` class probabilities at the mask's resolution.
        mask: ``H x W`` class indices (``IGNORE_INDEX`` pixels belong to no true flake).
        class_names, flake_classes: the classes, and the indices of those that are flakes.
        min_area, min_confidence: the post-processing ``predict`` applies to predicted flakes.
        floors, thresholds: size floors and IoU thresholds, by key suffix.
        clean: close the labels' 1-px holes and gaps first (:func:`clean_labels`).

    Returns:
        ``{(class name, floor suffix, threshold suffix): MatchRecord}``.
    """
    image = ImageFlakes.of(probabilities, mask, class_names, flake_classes, clean)
    return image.matches(min_area, min_confidence, floors, thresholds)


def average_precision(record: MatchRecord) -> float:
    """COCO's interpolated AP (101 recall points) of one class's pooled matches (``nan``: no truth)."""
    if record.truths == 0:
        return float("nan")
    if not record.scores:
        return 0.0
    order = np.argsort(-np.asarray(record.scores), kind="mergesort")
    hits = np.asarray(record.matched, bool)[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall = tp / record.truths
    precision = tp / np.maximum(tp + fp, np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, _RECALL_POINTS, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in at]))


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


class FlakeScores:
    """Flake precision, recall, F1 and AP50 over a set of images, torchmetrics-style
    (``update`` per image, ``compute`` at the end, ``merge`` to pool folds).

    ``compute(prefix)`` gives, per flake class ``NAME``, floor suffix ``S`` (``""``: >= 100 px,
    ``_device``: >= 600 px) and IoU suffix ``T`` (``""``: 0.5, ``_iou25``: 0.25):
    ``PREFIX/flake_{precision,recall,f1}_NAME{S}{T}``, the counts ``PREFIX/flake_{tp,fp,fn}_NAME{S}{T}``
    and ``PREFIX/flake_ap50_NAME{S}``. Precision is ``nan`` without predictions, recall without truth.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        flake_classes: Sequence[int],
        min_area: int = 0,
        min_confidence: float = 0.0,
        floors: Mapping[str, int] = FLOORS,
        thresholds: Mapping[str, float] = IOU_THRESHOLDS,
    ):
        self.class_names, self.flake_classes = list(class_names), list(flake_classes)
        self.min_area, self.min_confidence = int(min_area), float(min_confidence)
        self.floors, self.thresholds = dict(floors), dict(thresholds)
        self.reset()

    def reset(self) -> None:
        self.records: dict[tuple[str, str, str], MatchRecord] = {
            (self.class_names[c], f, t): MatchRecord()
            for c in self.flake_classes
            for f in self.floors
            for t in self.thresholds
        }
        #: per image added by :meth:`update`: ``{key: (tp, fp, fn)}`` (for intervals over images)
        self.image_counts: list[dict[tuple[str, str, str], tuple[int, int, int]]] = []

    def update(self, probabilities: np.ndarray, mask: np.ndarray) -> None:
        """Add one image: ``C x H x W`` probabilities at the stored resolution of its ``H x W`` mask."""
        self.update_image(ImageFlakes.of(probabilities, mask, self.class_names, self.flake_classes))

    def update_image(self, image: ImageFlakes) -> None:
        """Add one image overlapped before (:meth:`ImageFlakes.of`), e.g. once for many settings."""
        found = image.matches(self.min_area, self.min_confidence, self.floors, self.thresholds)
        for key, record in found.items():
            self.records[key].extend(record)
        self.image_counts.append({key: (r.tp, r.fp, r.fn) for key, r in found.items()})

    def merge(self, other: FlakeScores | Mapping[str, Any]) -> None:
        """Pool another instance's matches (or its :meth:`to_dict`), e.g. another fold's. The per-image
        counts behind :meth:`intervals` are not carried over: intervals cover :meth:`update`-d images."""
        records = other.records if isinstance(other, FlakeScores) else self._records_from(other)
        for key, record in records.items():
            self.records.setdefault(key, MatchRecord()).extend(record)

    def to_dict(self) -> dict[str, Any]:
        """The matches as plain JSON: ``{"monolayer|_device|": {"scores", "matched", "truths"}}``."""
        return {"|".join(key): record.to_dict() for key, record in self.records.items()}

    @staticmethod
    def _records_from(data: Mapping[str, Any]) -> dict[tuple[str, str, str], MatchRecord]:
        out = {}
        for key, value in data.items():
            name, floor, thr = key.split("|")
            out[(name, floor, thr)] = MatchRecord.from_dict(value)
        return out

    @classmethod
    def pooled(cls, parts: Iterable[Mapping[str, Any]], class_names, flake_classes) -> FlakeScores:
        """One instance holding the matches of every part (``to_dict`` outputs, e.g. CV folds)."""
        scores = cls(class_names, flake_classes)
        for part in parts:
            scores.merge(part)
        return scores

    def compute(self, prefix: str) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for (name, floor_key, thr_key), r in self.records.items():
            tail = f"{name}{floor_key}{thr_key}"
            out[f"{prefix}/flake_precision_{tail}"] = _ratio(r.tp, r.tp + r.fp)
            out[f"{prefix}/flake_recall_{tail}"] = _ratio(r.tp, r.truths)
            out[f"{prefix}/flake_f1_{tail}"] = _ratio(2 * r.tp, 2 * r.tp + r.fp + r.fn)
            out[f"{prefix}/flake_tp_{tail}"] = r.tp
            out[f"{prefix}/flake_fp_{tail}"] = r.fp
            out[f"{prefix}/flake_fn_{tail}"] = r.fn
            if thr_key == "":
                out[f"{prefix}/flake_ap50_{name}{floor_key}"] = average_precision(r)
        return out

    def intervals(self, prefix: str, resamples: int = 2000, seed: int = 0) -> dict[str, list[float]]:
        """95 % bootstrap intervals over images (percentile; images drawn with replacement, their
        matches pooled) of each flake precision, recall and F1 at IoU 0.5:
        ``PREFIX/flake_f1_NAME{S}_ci95: [low, high]``. Needs the images added by :meth:`update`. A
        resample where a value is undefined (no prediction for precision, no truth for recall) is left
        out of that value's interval."""
        if not self.image_counts:
            return {}
        keys = [k for k in self.records if k[2] == ""]
        counts = np.array([[image[k] for k in keys] for image in self.image_counts], np.float64)  # I x K x 3
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(counts), size=(resamples, len(counts)))
        summed = counts[draws].sum(axis=1)  # R x K x 3
        tp, fp, fn = summed[..., 0], summed[..., 1], summed[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {
                "precision": tp / (tp + fp),
                "recall": tp / (tp + fn),
                "f1": 2 * tp / (2 * tp + fp + fn),
            }
        out: dict[str, list[float]] = {}
        for j, (name, floor_key, _) in enumerate(keys):
            for metric, table in values.items():
                finite = table[:, j][np.isfinite(table[:, j])]
                low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan)
                out[f"{prefix}/flake_{metric}_{name}{floor_key}_ci95"] = [float(low), float(high)]
        return out

    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """Confidence and rightness (matched at IoU 0.5) of every predicted flake the first floor
        counts (of at least its size, or matched to a true flake that is), over all flake classes (for
        reliability bins and the flake ECE)."""
        first = next(iter(self.floors))
        conf, right = [], []
        for (_, floor_key, thr_key), r in self.records.items():
            if floor_key == first and thr_key == "":
                conf += r.scores
                right += r.matched
        return np.asarray(conf, float), np.asarray(right, bool)
