"""``flakeseg compare`` and ``flakeseg ablation``: studies over the data sets of a profile
(:func:`flakeseg.studies.common.profile_study_main`)."""

from __future__ import annotations

from collections.abc import Sequence

from flakeseg.studies.common import profile_study_main

__all__ = ["ablation_main", "compare_main"]


def compare_main(argv: Sequence[str] | None = None) -> int:
    """``flakeseg compare`` (``make compare``)."""
    from flakeseg.studies import compare

    summary = compare.__doc__.split("\n\n")[0]  # the module's first paragraph says what it does
    job = lambda r: r.model.name  # noqa: E731
    return profile_study_main(argv, "compare", summary, compare.CompareProfile.load, compare.compare, job)


def ablation_main(argv: Sequence[str] | None = None) -> int:
    """``flakeseg ablation`` (``make ablation``)."""
    from flakeseg.studies import ablation

    summary = ablation.__doc__.split("\n\n")[0]
    return profile_study_main(
        argv, "ablation", summary, ablation.AblationProfile.load, ablation.run_ablation, lambda r: r.step.name
    )
