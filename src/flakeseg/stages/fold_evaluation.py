"""What a cross-validation run's fold models do beyond their CV score: test-time augmentation, the
fold ensemble, post-processing, temperature scaling, calibration and test region accuracy.

Each fold model predicts the images it never saw in training (its validation fold, "out of fold") and
every test image. From those predictions, with the options of :class:`EvalOptions`:

- **CV flake scores** (``cv/flake_*``: precision, recall, F1 and AP50 of the out-of-fold
  predictions, matches pooled over every fold of every repeat) and **CV pixel scores** (mean
  per-class accuracy, macro precision, mean IoU; mean and std over the folds of every repeat),
  optionally averaged over the 8 flips/rotations (``tta``), with the flakes ``predict`` would list:
  ``postprocess`` chooses its ``min_area`` and ``min_confidence`` on these same folds by the pooled
  flake F1 (mean over flake classes, >= 100 px, IoU 0.5); since that choice saw the images it is
  scored on, ``cv_crossfit/flake_*`` scores each fold at the setting chosen on the other folds of its
  repeat;
- **ECE** of the out-of-fold pixel probabilities; with ``temperature`` each fold's probabilities are
  divided (as logits) by a temperature fitted on the *other* folds' predictions of its repeat, so the
  ECE stays a held-out figure (another repeat's folds hold the same images);
- **test scores** (flake scores, region accuracy, the paper's Table 2 measure, and pixel scores): of
  each fold model (mean and std), or of the fold models' averaged probabilities (``ensemble``: one
  ensemble per repeat, mean and std over repeats), with the temperature fitted on all out-of-fold
  predictions and the post-processing chosen on CV;
- reliability tables of pixels and of predicted flakes (a flake is right when it matches a true
  flake at IoU >= 0.5; flakes of at least 100 px, out of fold);
- with ``unknown``, the scores of what ``predict`` lists and shows (``cv_listed/...``): flake scores
  and pixel scores of the map a screening run shows (its listed flakes, post-processed), where a
  held-out flake whose colour is off its class takes the layer class it fits, else is listed as
  ``unknown`` (no listing, its pixels background), checked against a setup calibrated on the fold's
  own training images and labels, as the test stage gives a model's card (the shipped setups saw
  every training label).

:func:`collect_predictions` refuses a run whose CV pool holds test images (``cv.pool=all``): its fold
models trained on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import track

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.classes import IGNORE_INDEX, region_class_indices
from flakeseg.data.preprocess import resize_probabilities
from flakeseg.errors import ConfigError
from flakeseg.evaluation.calibration import expected_calibration_error, fit_temperature, reliability_bins
from flakeseg.evaluation.flake_scores import FlakeScores, ImageFlakes
from flakeseg.evaluation.postprocess import Postprocess, choose_postprocess, postprocessed_map
from flakeseg.evaluation.regions import counted_regions, pixel_scores, region_accuracy, region_min_area_px
from flakeseg.evaluation.test_scores import colour_check_listing, flake_scores, shown_maps
from flakeseg.inference.checkpoint import card_from_config
from flakeseg.inference.predictor import ClassicalBackend, Predictor, load_predictor
from flakeseg.stages.evaluation_options import EvalOptions

log = logging.getLogger(__name__)

__all__ = [
    "CVPredictions",
    "EvalOptions",
    "collect_predictions",
    "evaluate_cv_run",
    "evaluate_predictions",
    "fold_setups",
    "listed_scores",
]

HEADLINE = ("mean_class_acc", "macro_precision", "mean_iou")
#: probabilities are floored here before taking logs (temperature scaling works on log-probabilities)
_EPS = 1e-7


@dataclass
class CVPredictions:
    """Every fold model's probabilities on its held-out fold and on the test split.

    Attributes:
        class_names: the classes, background first.
        flake_classes: indices of the classes that are flakes (regions, post-processing).
        val_masks: per fold, the masks of its held-out images (at the model's scale).
        val_probs: per fold, ``C x H x W`` probabilities of its model on those images.
        val_stored_masks: per fold, the masks of its held-out images as stored (flakes are scored there).
        test_ids: test image ids.
        test_masks: test masks (at the model's scale).
        test_probs: per fold model, the probabilities of every test image.
        test_stored_masks: test masks as stored.
        region_min_area: ground-truth regions from this many pixels count for region accuracy.
        scale: the model's ``data.scale`` (stored pixels per model pixel, squared, convert areas).
        tta: whether the probabilities are averaged over the 8 flips/rotations.
        data_config: the run's ``data`` config (the crystal, and what a fold's setup is fitted on).
        fold_train_ids: per fold, the ids of its training images.
        val_sets: per fold, its held-out images (their files: the colour check reads them as stored).
        score_crop: ``cv.score_crop``: the held-out images were scored on their centre crops.
        fold_repeats: per fold, the repeat it belongs to (``cv.repeats``; empty: one repeat).
    """

    class_names: list[str]
    flake_classes: list[int]
    val_masks: list[list[np.ndarray]]
    val_probs: list[list[np.ndarray]]
    val_stored_masks: list[list[np.ndarray]]
    test_ids: list[str]
    test_masks: list[np.ndarray]
    test_probs: list[list[np.ndarray]]
    test_stored_masks: list[np.ndarray]
    region_min_area: int
    scale: float = 1.0
    tta: bool = False
    notes: list[str] = field(default_factory=list)
    data_config: dict[str, Any] = field(default_factory=dict)
    fold_train_ids: list[list[str]] = field(default_factory=list)
    val_sets: list[FlakeImages] = field(default_factory=list)
    score_crop: int | None = None
    fold_repeats: list[int] = field(default_factory=list)
    #: per fold, the setup calibrated on its training images (:func:`fold_setups` fills it once)
    setups: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def repeats(self) -> list[list[int]]:
        """The folds of each repeat (indices into the per-fold lists), in repeat order: each repeat's
        held-out folds cover the CV pool once."""
        repeats = self.fold_repeats or [0] * len(self.val_probs)
        if len(repeats) != len(self.val_probs):
            raise ValueError(f"CVPredictions: {len(repeats)} fold repeats for {len(self.val_probs)} folds")
        return [[k for k, r in enumerate(repeats) if r == repeat] for repeat in sorted(set(repeats))]


def _probabilities(predictor: Predictor, images: Sequence[np.ndarray], label: str) -> list[np.ndarray]:
    return [
        predictor.probabilities_at_model_scale(image)
        for image in track(images, description=label, transient=True)
    ]


def collect_predictions(
    metrics: Mapping[str, Any], tta: bool = False, device: str | None = None
) -> CVPredictions:
    """Load each fold model of a complete CV run (its ``metrics.json``) and predict with it.

    The models are the ones the CV scores are of: each fold's model after its last epoch. They run on
    ``device`` (default: a GPU when one is visible, else the CPU).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    from flakeseg.data import load_dataset
    from flakeseg.data.splits import cv_ids, split_from_config
    from flakeseg.inference.checkpoint import load_classical
    from flakeseg.models import is_classical

    if not metrics.get("complete"):
        raise ConfigError("evaluate: the CV run is not complete (rerun it first)")
    config = metrics["config"]
    data_cfg = config["data"]
    names = list(metrics["class_names"])
    flake_classes = region_class_indices(data_cfg["classes"], names)
    split = split_from_config(data_cfg)
    cv_config = config.get("cv") or {}
    pool = cv_ids(split, cv_config.get("pool") or "train")
    leaked = sorted(set(pool) & set(split["test"]))
    if leaked:
        raise ConfigError(
            f"cv.pool={cv_config.get('pool')}: the CV pool holds {len(leaked)} test images "
            f"({', '.join(leaked[:3])}{', ...' if len(leaked) > 3 else ''}) the fold models trained on; "
            "their test scores would be no test (use cv.pool=train)"
        )
    train = load_dataset(data_cfg, ids=pool, progress=False)
    test = load_dataset(data_cfg, ids=split["test"], progress=False)
    classical = is_classical(config["model"])
    if classical and tta:
        raise ConfigError("evaluate.tta: test-time augmentation is for networks, not classical models")
    val_masks, val_probs, val_stored, test_probs, val_sets = [], [], [], [], []
    crop = int(cv_config["score_crop"]) if cv_config.get("score_crop") else None
    for fold in metrics["folds"]:
        number = int(fold["fold"]) + 1
        repeat = int(fold.get("repeat", 0))
        if classical:
            model = load_classical(fold["model_file"], len(names))
            predictor = Predictor(ClassicalBackend(model), card_from_config(config))
        else:
            path = fold.get("last_checkpoint")
            if not path:
                raise ConfigError(
                    f"checkpoint.save_last: fold {number}"
                    + (f" of repeat {repeat + 1}" if repeat else "")
                    + " kept no last.ckpt, the model its CV score is of"
                )
            predictor = load_predictor(path, device=device, tta=tta)
        # a model with inputs fitted on its fold's labels prepares them; the substrate on whole images
        val = train.subset(fold["val_ids"]).mapped(predictor.prepare_loaded)
        if cv_config.get("score_crop"):  # scored as the CV scored it
            val = val.center_cropped(round(int(cv_config["score_crop"]) * float(data_cfg["scale"])))
        label = (
            f"fold {number}"
            + (f" (repeat {repeat + 1})" if repeat else "")
            + (" (8 flips/rotations)" if tta else "")
        )
        val_probs.append(_probabilities(predictor, val.images, f"{label}: held-out"))
        test_probs.append(
            _probabilities(predictor, test.mapped(predictor.prepare_loaded).images, f"{label}: test")
        )
        val_masks.append(list(val.masks))
        val_stored.append(val.stored_masks(crop, float(data_cfg["scale"])))
        val_sets.append(val)
    region_min_area = region_min_area_px(data_cfg.get("region_min_area"), data_cfg["scale"])
    return CVPredictions(
        class_names=names,
        flake_classes=flake_classes,
        val_masks=val_masks,
        val_probs=val_probs,
        val_stored_masks=val_stored,
        test_ids=list(test.ids),
        test_masks=list(test.masks),
        test_probs=test_probs,
        test_stored_masks=test.stored_masks(),
        region_min_area=region_min_area,
        scale=float(data_cfg["scale"]),
        tta=tta,
        data_config=dict(data_cfg),
        fold_train_ids=[list(fold.get("train_ids") or []) for fold in metrics["folds"]],
        val_sets=val_sets,
        score_crop=crop,
        fold_repeats=[int(fold.get("repeat", 0)) for fold in metrics["folds"]],
    )


def fold_setups(preds: CVPredictions) -> list[dict[str, Any]] | str:
    """Per fold, the microscope setup calibrated on its training images and labels (about 10 s each
    on 2 cores; kept on ``preds``), or why there is none: the colour check needs the crystal
    (``data.material``) and the held-out images whole (no ``cv.score_crop``)."""
    if preds.setups:
        return preds.setups
    material = preds.data_config.get("material")
    if not material:
        return "data.material is not set (the optics needs the crystal)"
    if not preds.val_sets:
        return "the predictions hold no held-out image files"
    if not preds.fold_train_ids or not all(preds.fold_train_ids):
        return "the CV run does not name each fold's training images"
    if preds.score_crop:
        return "the held-out images are scored on crops (cv.score_crop), not whole"
    from flakeseg.data.contrasts import measure_labelled
    from flakeseg.errors import FlakesegError
    from flakeseg.optics.calibration import calibrate

    setups = []
    for ids in preds.fold_train_ids:
        try:
            labelled = measure_labelled(preds.data_config, ids)
            setups.append(calibrate(np.zeros((0, 3)), str(material), labelled).to_dict())
        except FlakesegError as exc:  # an unknown crystal, no layer class: the CV scores stand without it
            return f"no setup for the colour check ({str(exc).splitlines()[0]})"
    preds.setups.extend(setups)
    return preds.setups


def listed_scores(
    preds: CVPredictions, val_probs: Sequence[Sequence[np.ndarray]], chosen: Postprocess
) -> dict[str, Any]:
    """``cv_listed/...``: flake and pixel scores of what ``predict`` lists and shows on each held-out
    image (flakes kept by ``chosen``, in the classes the colour check by the fold's setup gives them;
    those whose colour fits no layer class unknown: no listing, their pixels background), pooled over
    folds."""
    setups = fold_setups(preds)
    if isinstance(setups, str):
        log.info("evaluate.unknown: skipped, %s", setups)
        return {"cv_listed/skipped": setups}
    names, flakes = preds.class_names, preds.flake_classes
    listed = FlakeScores(names, flakes, chosen.min_area, chosen.min_confidence)
    shown, truth, unknown, reclassed = [], [], 0, 0
    data_name = str(preds.data_config["name"])
    folds = zip(val_probs, preds.val_stored_masks, preds.val_sets, setups, strict=True)
    for probs, masks, images, setup in folds:
        checked, found = colour_check_listing(probs, images, flakes, chosen, data_name, setup)
        if checked is None:
            return {"cv_listed/skipped": "the fold's setup names no material or substrate colours"}
        unknown += found["flakes"]
        reclassed += found["reclassed"]
        listed.merge(flake_scores(probs, masks, names, flakes, chosen, checked))
        shown += shown_maps(probs, masks, names, flakes, chosen, checked)
        truth += masks
    return {
        **listed.compute("cv_listed"),
        **pixel_scores(shown, truth, names, prefix="cv_listed"),
        "cv_listed/flakes_unknown": unknown,
        "cv_listed/flakes_reclassed": reclassed,
    }


def crossfit_flake_scores(
    preds: CVPredictions,
    mean_flake_f1: Callable[[int, float, Sequence[int]], float],
    pooled_flakes: Callable[[int, float, Sequence[int]], FlakeScores],
    options: EvalOptions,
) -> dict[str, Any]:
    """``cv_crossfit/...``: each fold's held-out flakes listed at the post-processing chosen on the
    *other* folds of its repeat (never on its own images), matches pooled over every fold; and the
    choices (``cv_crossfit/postprocess``, per fold). The ``cv/`` scores at the post-processing chosen
    on every fold see their own images in the choice; these do not. Empty with one fold."""
    merged = FlakeScores(preds.class_names, preds.flake_classes)
    choices = []
    for repeat in preds.repeats():
        if len(repeat) < 2:
            return {}
        for k in repeat:
            others = [f for f in repeat if f != k]
            (area, confidence), _ = choose_postprocess(
                lambda a, c, others=others: mean_flake_f1(a, c, others),
                options.min_areas,
                options.min_confidences,
            )
            choices.append({"min_area": area, "min_confidence": confidence})
            merged.merge(pooled_flakes(area, confidence, [k]))
    return {**merged.compute("cv_crossfit"), "cv_crossfit/postprocess": choices}


# -- scoring ----------------------------------------------------------------------------------------


def _flat_log_probs(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled pixels of a set of images as ``P x C`` log-probabilities and ``P`` targets."""
    logits, targets = [], []
    for prob, mask in zip(probs, masks, strict=True):
        keep = mask != IGNORE_INDEX
        logits.append(np.log(np.maximum(prob[:, keep].T, _EPS)))
        targets.append(mask[keep].astype(np.int64))
    return torch.from_numpy(np.concatenate(logits)), torch.from_numpy(np.concatenate(targets))


def apply_temperature(prob: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(prob) / T)`` over the class axis (0) of a ``C x H x W`` map."""
    if temperature == 1.0:
        return prob
    logits = np.log(np.maximum(prob, _EPS)) / temperature
    logits -= logits.max(axis=0, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=0, keepdims=True)).astype(np.float32)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1, as ``metrics.json``'s ``cv/..._std``)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _binned_ece(bins: Sequence[Mapping[str, float]]) -> float:
    total = sum(b["count"] for b in bins)
    if total == 0:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def evaluate_predictions(preds: CVPredictions, options: EvalOptions) -> dict[str, Any]:
    """The scores of :mod:`this module <flakeseg.stages.fold_evaluation>` for one set of options.

    ``options.tta`` must match ``preds.tta`` (predictions are made once per TTA setting).
    """
    if options.tta != preds.tta:
        raise ValueError("evaluate_predictions: options.tta differs from the predictions' tta")
    names, flakes, n_folds = preds.class_names, preds.flake_classes, len(preds.val_probs)

    # temperature: fold k's is fitted on the other folds of its repeat (the other repeats hold its
    # held-out images too); the test one on every held-out prediction
    repeats = preds.repeats()
    temperatures = [1.0] * n_folds
    test_temperature = 1.0
    if options.temperature:
        for k in range(n_folds):
            repeat = next(group for group in repeats if k in group)
            others = [f for f in repeat if f != k] or [k]
            logits, target = _flat_log_probs(
                [p for f in others for p in preds.val_probs[f]],
                [m for f in others for m in preds.val_masks[f]],
            )
            temperatures[k] = fit_temperature(logits, target, seed=k)
        logits, target = _flat_log_probs(
            [p for ps in preds.val_probs for p in ps], [m for ms in preds.val_masks for m in ms]
        )
        test_temperature = fit_temperature(logits, target, seed=n_folds)
    val_probs = [[apply_temperature(p, temperatures[k]) for p in ps] for k, ps in enumerate(preds.val_probs)]
    # flakes are listed and scored on the images' own pixels, as `predict` lists them; overlapped
    # with the true flakes once: every post-processing setting below is a choice among the same regions
    val_images = [
        ImageFlakes.of(resize_probabilities(p, *m.shape), m, names, flakes)
        for ps, ms in zip(val_probs, preds.val_stored_masks, strict=True)
        for p, m in zip(ps, ms, strict=True)
    ]
    image_folds = [k for k, ps in enumerate(val_probs) for _ in ps]

    def pooled_flakes(area: int, confidence: float, folds: Sequence[int] | None = None) -> FlakeScores:
        scores = FlakeScores(names, flakes, area, confidence)
        for image, fold in zip(val_images, image_folds, strict=True):
            if folds is None or fold in folds:
                scores.update_image(image)
        return scores

    def mean_flake_f1(area: int, confidence: float, folds: Sequence[int] | None = None) -> float:
        computed = pooled_flakes(area, confidence, folds).compute("cv")
        return float(np.nanmean([computed[f"cv/flake_f1_{names[c]}"] for c in flakes]))

    setting_scores: dict[tuple[int, float], float] = {}
    chosen = Postprocess()
    crossfit: dict[str, Any] = {}
    if options.postprocess:
        (area, confidence), setting_scores = choose_postprocess(
            mean_flake_f1, options.min_areas, options.min_confidences
        )
        chosen = Postprocess(area, confidence)
        crossfit = crossfit_flake_scores(preds, mean_flake_f1, pooled_flakes, options)
    model_area = max(1, round(chosen.min_area * preds.scale**2))  # the same flakes at the model's scale

    def shown(prob: np.ndarray) -> np.ndarray:
        """The class map the pixel scores see: with ``postprocess``, only the flakes ``predict`` lists."""
        if not options.postprocess:
            return prob.argmax(axis=0).astype(np.uint8)
        return postprocessed_map(prob, names, flakes, model_area, chosen.min_confidence)

    per_fold = [
        pixel_scores([shown(p) for p in ps], masks, names, prefix="cv")
        for ps, masks in zip(val_probs, preds.val_masks, strict=True)
    ]
    result: dict[str, Any] = {"options": asdict(options)}
    for key in HEADLINE:
        result[f"cv/{key}"], result[f"cv/{key}_std"] = _mean_std([s[f"cv/{key}"] for s in per_fold])
    pooled = pooled_flakes(chosen.min_area, chosen.min_confidence)
    result.update(pooled.compute("cv"))
    result.update(crossfit)

    all_val_probs = [p for ps in val_probs for p in ps]
    all_val_masks = [m for ms in preds.val_masks for m in ms]
    flat_logp, flat_target = _flat_log_probs(all_val_probs, all_val_masks)
    flat_probs = flat_logp.exp()
    result["cv/ece"] = expected_calibration_error(flat_probs, flat_target)
    confidence, winner = flat_probs.max(dim=1)
    result["cv/pixel_reliability"] = reliability_bins(confidence.numpy(), (winner == flat_target).numpy())
    # flakes as `predict` lists them; right: matched one-to-one at IoU >= 0.5
    flake_conf, flake_right = pooled.calibration()
    result["cv/flake_reliability"] = reliability_bins(flake_conf, flake_right)
    result["cv/flake_ece"] = _binned_ece(result["cv/flake_reliability"])
    result["cv/flakes"] = int(flake_conf.size)
    if options.unknown:
        result.update(listed_scores(preds, val_probs, chosen))

    # the test split: each fold model alone, or the average of each repeat's fold models
    models = repeats if options.ensemble else [[k] for k in range(n_folds)]
    test_rows = []
    for members in models:
        probs = [
            apply_temperature(
                np.mean([preds.test_probs[k][i] for k in members], axis=0)
                if len(members) > 1
                else preds.test_probs[members[0]][i],
                test_temperature if options.temperature else 1.0,
            )
            for i in range(len(preds.test_ids))
        ]
        labels = [shown(p) for p in probs]
        scored = list(zip(preds.test_ids, labels, preds.test_masks, strict=True))
        regions, _ = counted_regions(scored, flakes, names, preds.region_min_area)
        scores = pixel_scores(labels, preds.test_masks, names, prefix="test")
        test_flakes = FlakeScores(names, flakes, chosen.min_area, chosen.min_confidence)
        for prob, mask in zip(probs, preds.test_stored_masks, strict=True):
            test_flakes.update(resize_probabilities(prob, *mask.shape), mask)
        test_rows.append(
            {
                "region_accuracy": region_accuracy(regions),
                "regions": len(regions),
                **scores,
                **test_flakes.compute("test"),
            }
        )
    flake_keys = [k for k in test_rows[0] if k.startswith("test/flake_")]
    for key in ("region_accuracy", *(f"test/{k}" for k in HEADLINE), *flake_keys):
        mean, std = _mean_std([row[key] for row in test_rows])
        short = key if key.startswith("test/") else f"test/{key}"
        result[short], result[f"{short}_std"] = mean, std
    result["test/regions"] = test_rows[0]["regions"]
    result["test/models"] = (
        ("ensemble of the fold models" + (" of each repeat" if len(repeats) > 1 else ""))
        if options.ensemble
        else "each fold model"
    )
    result["cv/repeats"] = len(repeats)
    result["postprocess"] = {"min_area": chosen.min_area, "min_confidence": chosen.min_confidence}
    result["postprocess_min_area"] = chosen.min_area
    result["postprocess_scores"] = {f"{a}|{c:g}": v for (a, c), v in setting_scores.items()}
    result["temperatures"] = temperatures
    result["test_temperature"] = test_temperature
    return result


def evaluate_cv_run(metrics: Mapping[str, Any], options: EvalOptions) -> dict[str, Any]:
    """:func:`collect_predictions` then :func:`evaluate_predictions` of one complete CV run."""
    return evaluate_predictions(collect_predictions(metrics, tta=options.tta), options)
