"""Classical models, fitted on whole training images without gradient descent: ``bovw`` (bag of
visual words, the paper's traditional baseline) and ``contrast_gmm`` (optical contrast against the
substrate, a Gaussian per class, 2DMatGMM's method). Each file imports only the registry and
:mod:`flakeseg.models.classical.base`; :mod:`flakeseg.models` imports them to register them.
"""
