"""pyproject's warning filters: a deprecation attributed to our code is an error in the tests, one attributed
to a third-party module is not (it is shown in pytest's summary)."""

import warnings

import pytest


@pytest.mark.parametrize("module", ["gap_jax.steps", "experiments.framework", "test_train"])
def test_our_deprecations_fail(module):
  with pytest.raises(DeprecationWarning):
    warnings.warn_explicit("old API", DeprecationWarning, "f.py", 1, module=module)


def test_third_party_deprecations_do_not_fail():
  with pytest.warns(DeprecationWarning):
    warnings.warn_explicit("old API", DeprecationWarning, "f.py", 1, module="orbax.checkpoint.foo")
