"""Hydra launcher plugin ``hydra/launcher=queue`` of flakeseg (see :mod:`.queue_launcher`)."""
