"""`make bench`: speed, scale and memory, each figure measured beside its limit in the same run.

    python -m tests.bench            # the full run (minutes; figures for the README)
    python -m tests.bench --quick    # every figure, small, in under two minutes (a test runs this)
    python -m tests.bench --only face,gate

Results: a table on stdout and one flat JSON object in var/bench/results.json.
"""
