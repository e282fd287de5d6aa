"""Classical (non-network) baselines, fitted on whole training images without gradient descent.

- :mod:`flakeseg.classic.base`: the :class:`~flakeseg.classic.base.ClassicalModel` protocol and its
  ``.npz`` files (fitted numbers only, nothing pickled);
- :mod:`flakeseg.classic.bovw`: bag of visual words over superpixels (``model=bovw``);
- :mod:`flakeseg.classic.contrast_gmm`: optical contrast against the substrate, one Gaussian per class
  (``model=contrast_gmm``);
- :mod:`flakeseg.classic.fitting`: a cross-validation fold and the test stage for classical models,
  with the metrics and ``metrics.json`` entries of the networks.

The models register themselves in :mod:`flakeseg.models` with ``kind="classical"``.
"""
