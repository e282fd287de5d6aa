"""``flakeseg compare``, ``flakeseg ablation`` and ``flakeseg leaderboard``: studies over the data sets
of a profile (:func:`flakeseg.studies.common.profile_study_main`). Each parses its arguments before
importing its study, so ``--help`` and usage errors answer without torch."""

from __future__ import annotations

from collections.abc import Sequence

from flakeseg.studies.common import profile_study_main

__all__ = ["ablation_main", "compare_main", "fewshot_main", "leaderboard_main"]


def compare_main(argv: Sequence[str] | None = None) -> int:
    """``flakeseg compare`` (``make compare``)."""
    job = lambda r: r.model.name  # noqa: E731
    return profile_study_main(argv, "compare", "flakeseg.studies.compare", "CompareProfile", "compare", job)


def ablation_main(argv: Sequence[str] | None = None) -> int:
    """``flakeseg ablation`` (``make ablation``)."""
    job = lambda r: r.step.name  # noqa: E731
    return profile_study_main(
        argv, "ablation", "flakeseg.studies.ablation", "AblationProfile", "run_ablation", job
    )


def leaderboard_main(argv: Sequence[str] | None = None) -> int:
    """``flakeseg leaderboard`` (``make leaderboard``): the report in ``--out``, the runs (checkpoints,
    logs) in ``--runs``."""
    import logging
    from pathlib import Path

    from flakeseg.studies.common import run_study, study_parser, study_summary

    parser = study_parser(
        "flakeseg leaderboard",
        study_summary("flakeseg.studies.leaderboard"),
        "leaderboard",
        "cpu",
        ("mos2", "graphene"),
        Path("outputs/leaderboard"),
        out_help="folder of leaderboard.md/.json/.png (default: outputs/leaderboard)",
    )
    parser.add_argument("--runs", type=Path, default=None, help="folder of the CV runs (default: <out>/runs)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the complete runs in --runs; train nothing (rows without one: not run)",
    )
    parser.add_argument(
        "--models",
        default=None,
        metavar="NAME[,NAME...]",
        help="run only these rows of the profile (default: all); the other rows of the "
        "leaderboard.json already in --out are kept, marked as from an earlier invocation",
    )
    args = parser.parse_args(argv)
    from flakeseg.studies import leaderboard  # after parsing: --help and usage errors need none of it

    def start():
        profile = leaderboard.LeaderboardProfile.load(args.profile)
        datasets = profile.datasets if args.dataset == "all" else [args.dataset]
        runs = args.runs or args.out / "runs"
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        return leaderboard.run_leaderboard(profile, datasets, args.out, runs, args.report_only, models)

    return run_study(
        logging.getLogger("flakeseg.studies.leaderboard"),
        start,
        lambda r: f"{r.dataset} / {r.protocol} / {r.model.name}: {r.error}" if r.error else None,
        lambda: args.out / "leaderboard.md",
    )


def fewshot_main(argv: Sequence[str] | None = None) -> int:
    """``flakeseg fewshot`` (``make fewshot``): the report in ``--out``, the runs in ``--runs``."""
    import logging
    from pathlib import Path

    from flakeseg.studies.common import run_study, study_parser, study_summary

    parser = study_parser(
        "flakeseg fewshot",
        study_summary("flakeseg.studies.fewshot"),
        "fewshot",
        "cpu",
        ("mos2", "graphene"),
        Path("outputs/fewshot"),
        out_help="folder of fewshot.md/.json/.png (default: outputs/fewshot)",
    )
    parser.add_argument("--runs", type=Path, default=None, help="folder of the runs (default: <out>/runs)")
    args = parser.parse_args(argv)
    from flakeseg.studies import fewshot

    def start():
        profile = fewshot.FewshotProfile.load(args.profile)
        datasets = profile.datasets if args.dataset == "all" else [args.dataset]
        return fewshot.run_fewshot(profile, datasets, args.out, args.runs or args.out / "runs")

    return run_study(
        logging.getLogger("flakeseg.studies.fewshot"),
        start,
        lambda r: f"{r.dataset} / {r.arm} / k={r.k} / draw {r.draw}: {r.error}" if r.error else None,
        lambda: args.out / "fewshot.md",
    )
