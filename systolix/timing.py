"""Wall-clock timing for the benchmarks."""

import time

__all__ = ["best_time"]


def best_time(function, repeats=3):
    """The shortest of ``repeats`` wall-clock times of ``function()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
