"""The test metrics of any trained model: ``flakeseg evaluate MODEL --data mos2 --split test``.

The model (a checkpoint, an ONNX export or a shipped model's name) predicts every image of the split
through the one :class:`~flakeseg.inference.predictor.Predictor`, prepared as its card says (scale,
substrate, fitted input channels); the scores are those of the test stage
(:func:`~flakeseg.evaluation.test_scores.score_test_split`), so the output of a model trained with
``stage=test`` equals its ``test_metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from flakeseg.errors import ConfigError

__all__ = ["SPLITS", "evaluate_model"]

SPLITS = ("test", "train", "all")
#: data keys evaluate takes from the model card, not from the data config
CARD_KEYS = ("data.scale", "data.substrate_normalize", "data.gmm_channels", "data.flatfield")


def evaluate_model(
    model: str,
    data: str,
    split: str = "test",
    data_overrides: Sequence[str] = (),
    device: str = "cpu",
    progress: bool = True,
    ids: Sequence[str] | None = None,
    **predictor_options: Any,
) -> dict[str, Any]:
    """The ``test/...`` metrics of ``model`` on the ``split`` images of data set ``data`` (or on the
    images ``ids``, e.g. the training images a few-shot model did not draw); ``progress``: the loading
    bar, then one on stderr while the images are predicted, each gone when done."""
    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.classes import region_class_indices
    from flakeseg.data.splits import split_from_config
    from flakeseg.evaluation.postprocess import Postprocess
    from flakeseg.evaluation.test_scores import colour_check_listing, score_test_split
    from flakeseg.inference.predictor import load_predictor
    from flakeseg.inference.shipped import resolve_model
    from flakeseg.optics.substrate import expand_flat_field

    if split not in SPLITS:
        raise ConfigError(f"--split: must be one of {', '.join(SPLITS)}, got {split!r}")
    for override in data_overrides:  # set from the model card below: an override would be ignored
        key = override.split("=", 1)[0]
        if key in CARD_KEYS:
            raise ConfigError(f"--set {override}: the images are prepared as the model card says; drop it")
    path = resolve_model(model)
    predictor = load_predictor(path, device=device, **predictor_options)
    card = predictor.card
    from flakeseg.utils.config_files import compose_data_config

    data_cfg = compose_data_config(data, list(data_overrides))
    if list(data_cfg["classes"]["names"]) != list(card.class_names):
        raise ConfigError(
            f"{path}: the model predicts {card.class_names}, data set {data} has classes "
            f"{data_cfg['classes']['names']} (pick the data set, or data.classes, it was trained on)"
        )
    # loaded as the model's training images were: at its scale; white balance and fitted channels
    # are then the predictor's (prepare_loaded)
    data_cfg.update(
        scale=card.data_scale,
        substrate_normalize=card.substrate_normalize,
        gmm_channels=card.inputs is not None,
        flatfield=None,  # the card's own field below, not the one today's recipe would train with
    )
    splits = split_from_config(data_cfg)
    wanted = [*splits["train"], *splits["test"]] if split == "all" else splits[split]
    if ids is not None:
        wanted = list(ids)
    if not wanted:
        raise ConfigError(f"--split {split}: data set {data_cfg['name']} has no {split} images to score")
    # divided by the card's flat field, as predict divides them
    field = expand_flat_field(card.flatfield) if card.flatfield else None
    images = load_dataset(data_cfg, ids=wanted, progress=progress, flatfield=field)
    names = list(card.class_names)
    regions_of = region_class_indices(data_cfg["classes"], names)
    # flakes listed as the card says (chosen on CV when it was shipped), else as `predict` lists them
    postprocess = Postprocess.from_card(card.postprocess)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not progress) as bar:
        probs = [
            predictor.probabilities_at_model_scale(predictor.prepare_loaded(image))
            for image in bar.track(images.images, description=f"predicting {split} images")
        ]
    # predict's colour check: a flake off its class's colour takes the class it fits, else no listing
    checked, unknown = colour_check_listing(probs, images, regions_of, postprocess, card.data, card.setup)
    scores = score_test_split(
        probs,
        images.masks,
        images.ids,
        names,
        regions_of,
        data_cfg,
        images.stored_masks(),
        postprocess,
        checked,
        unknown,
    )
    return {
        **scores.metrics,
        "model": str(path),
        "data": data_cfg["name"],
        "split": split,
        "ids": list(images.ids),
        "class_names": names,
    }
