"""What ``train.py`` runs: k-fold cross-validation (:mod:`.cv`), the test stage (:mod:`.test_split`),
the fold-model evaluation (:mod:`.fold_evaluation`), resume checks, config checks, and the task that
turns a Hydra config into one of them (:mod:`.task`)."""
