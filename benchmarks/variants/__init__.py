"""The competing strategies, one module each; every one runs as its own process.

Run one by hand with `python -m benchmarks.variants.<name> --base-url URL --token T
--time-scale 0.01 --workload '<json>'`; it prints one JSON report on stdout.
"""

# name -> module under benchmarks.variants; the order is the order of the table.
VARIANTS: dict[str, str] = {
    "library": "benchmarks.variants.library",
    "official_script": "benchmarks.variants.official_script",
    "naive_bounded": "benchmarks.variants.naive_bounded",
    "naive": "benchmarks.variants.naive",
    "sync_pool": "benchmarks.variants.sync_pool",
}

DESCRIPTIONS: dict[str, str] = {
    "library": "flowmusic-async (fm.generate_many / fm.generate in a task group)",
    "official_script": "useapi's batch script strategy: submit one by one, then poll each in turn",
    "naive_bounded": (
        "the naive client bounded by a semaphore of total-slots songs and httpx Limits of "
        "total-slots connections (the fair baseline)"
    ),
    "naive": (
        "UNBOUNDED (shows httpcore's pool collapse, not a strategy): asyncio.gather of every "
        "song, one 1 s poll loop per job, fixed 10 s on 429, httpx default limits"
    ),
    "sync_pool": "mode=sync, one blocking request per song in a thread pool of total-slots threads",
}
