# Hypothesis profiles of the fuzz tests (tests/sim/test_fuzz.py), one per tier; the tests take
# them with @settings(settings.get_profile(...)), so no other test changes. Both: no deadline
# (an engine example builds a simulator), a @reproduce_failure line with every failure, health
# checks that a build per example trips (and the autouse fixture above) suppressed. CI draws the
# same examples every run (derandomize, hence no example database); the slow tier draws new
# ones each run and keeps failing examples in build/hypothesis, so that the next run replays
# them first and resumes shrinking.
from pathlib import Path  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: E402

_FUZZ = dict(deadline=None, print_blob=True,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                    HealthCheck.data_too_large])
settings.register_profile("systolix-ci", derandomize=True, max_examples=30, **_FUZZ)
settings.register_profile("systolix-slow", max_examples=500, **_FUZZ,
                          database=DirectoryBasedExampleDatabase(
                              Path(__file__).resolve().parents[1] / "build" / "hypothesis"))
