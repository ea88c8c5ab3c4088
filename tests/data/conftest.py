"""Fixtures for the data tests: one prepared ``digits`` directory per session."""

import pytest

from cnnjax import data


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
  """A TFDS data directory holding the prepared ``digits`` data set."""
  path = str(tmp_path_factory.mktemp("tfds"))
  data.ensure_prepared("digits", data_dir=path)
  return path
