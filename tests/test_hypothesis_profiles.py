"""The suite's randomized tests are reproducible: the `ci` profile is derandomized."""

from hypothesis import settings

from tests import hypothesis_profiles


def test_the_ci_profile_draws_the_same_examples_every_run():
    if hypothesis_profiles.PROFILE != "ci":
        return
    assert settings.default.derandomize is True
    assert settings.default.database is None  # no replay of old failures makes runs differ
    assert settings.default.print_blob is True  # a failure prints how to reproduce it
    assert hypothesis_profiles.examples(80) == 80


def test_the_nightly_profile_draws_afresh_and_more():
    nightly = settings.get_profile("nightly")
    assert nightly.derandomize is False and nightly.print_blob is True
    assert hypothesis_profiles.SCALE["nightly"] == 10
