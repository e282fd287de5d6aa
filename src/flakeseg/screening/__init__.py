"""``flakeseg predict``: screening folders of new images with a trained model: flakes.csv, overlays,
probability maps and a self-contained HTML report."""
