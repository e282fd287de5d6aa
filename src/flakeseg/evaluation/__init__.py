"""Scoring predictions: pixel metrics (torchmetrics), region accuracy, ROC/PR curves, calibration,
post-processing, flakes as connected regions, and CV summaries over folds. Pure functions of
probabilities, class maps and masks: no model, no training."""
