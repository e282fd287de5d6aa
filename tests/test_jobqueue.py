"""The device queue: one job per device at a time, failures isolated."""

import itertools
import json
import sys

from flakeseg.studies.jobqueue import CPU, Job, resolve_devices, run_jobs

SLEEPER = """
import json, os, sys, time
start = time.time(); time.sleep(0.4)
record = {"device": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}
json.dump(record, open(sys.argv[1], "w"))
sys.exit(int(sys.argv[2]))
"""


def test_never_two_jobs_on_one_device_and_failures_do_not_stop_others(tmp_path):
    codes = [0, 0, 3, 0, 0]
    jobs = [
        Job(
            f"j{i}",
            [sys.executable, "-c", SLEEPER, str(tmp_path / f"{i}.json"), str(c)],
            tmp_path / f"{i}.log",
        )
        for i, c in enumerate(codes)
    ]
    results = run_jobs(jobs, ["0", "1"], progress=False)
    assert [r.returncode for r in results] == codes
    assert [r.ok for r in results] == [c == 0 for c in codes]
    runs = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(len(codes))]
    assert {r["device"] for r in runs} == {"0", "1"}
    for device in ("0", "1"):
        spans = sorted((r["start"], r["end"]) for r in runs if r["device"] == device)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    # the two devices worked side by side: some jobs on different devices overlap in time
    assert any(
        a["device"] != b["device"] and a["start"] < b["end"] and b["start"] < a["end"]
        for a in runs
        for b in runs
    )


def test_device_specs():
    assert resolve_devices(2) == [CPU, CPU]
    assert resolve_devices("0,2") == ["0", "2"]
    assert resolve_devices([1, 3]) == ["1", "3"]
    assert resolve_devices("auto")  # every visible GPU, or one CPU slot
