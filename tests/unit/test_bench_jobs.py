"""benchmarks.jobs.run_jobs: the same results in one process and in spawned workers."""

from benchmarks.jobs import run_jobs


def test_jobs_give_the_same_results_in_one_process_and_in_workers():
    jobs = [([3, 1, 2],), ([5, 4],), ([],)]
    alone = run_jobs(sorted, jobs, workers=1, progress=False, desc="t")
    assert alone == [1, 2, 3, 4, 5]  # in job order
    assert sorted(run_jobs(sorted, jobs, workers=2, progress=False, desc="t")) == alone  # in finishing order
