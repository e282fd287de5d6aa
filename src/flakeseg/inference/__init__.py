"""Trained models at work: safe checkpoint loading and the model card (:mod:`.checkpoint`), and the one
:class:`~flakeseg.inference.predictor.Predictor` (tiling, Gaussian blending, test-time augmentation,
temperature, torch / ONNX / classical backends) that CV validation, the test stage, the fold-model
evaluation, ``compare`` and ``flakeseg predict`` all use. Needs no Lightning."""

#: what ``flakeseg predict --backend`` takes (here, so the command line parses without torch)
BACKENDS = ("torch", "onnx")
#: what ``flakeseg predict --oxide`` takes besides a thickness: the oxide fitted on each image's
#: substrate colour (:func:`~flakeseg.inference.predictor.optics_predictor`'s ``fit_oxide``)
OXIDE_FIT = "fit"
