"""experiments/shift_consistency.py end to end on a tiny budget: APS is exactly consistent."""

import json
import os
import sys

import pytest
from testlib import load_file

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "shift_consistency.py")


def _load():
  name = "shift_consistency_experiment"
  if name not in sys.modules:  # Loaded once: its Flax modules are registered under this name.
    load_file(_PATH, name)
  return sys.modules[name]


@pytest.mark.slow
def test_quick_mode_writes_the_table_and_aps_is_circularly_consistent(tmp_path):
  experiment = _load()
  rows = experiment.main([
      "--workdir", str(tmp_path), "--quick", "--models", "shift_lenet", "--variants", "stride,aps",
      "--epochs", "1", "--max_test_images", "96", "--num_pairs", "2"])
  by_variant = {r["downsample"]: r for r in rows}
  assert by_variant["aps"]["circular"] == 1.0
  assert by_variant["aps"]["num_images"] == 96 and by_variant["aps"]["circular_max_shift"] == 4
  for r in rows:
    assert 0.0 <= r["crop"] <= 1.0 and 0.0 < r["test_accuracy"] <= 1.0
  for name in ("results.md", "results.json", "consistency.png"):
    assert os.path.getsize(tmp_path / name) > 0
  table = (tmp_path / "results.md").read_text()
  assert "| shift_lenet | aps |" in table and "| 100.00% |" in table
  assert "89.20%" in table and "91.31%" in table  # Zhang 2019's anchors
  assert json.loads((tmp_path / "results.json").read_text()) == rows
  assert os.path.exists(tmp_path / "shift_lenet-aps" / "summary.json")


def test_unknown_variant_is_a_usage_error(tmp_path):
  experiment = _load()
  with pytest.raises(SystemExit):
    experiment.parse_args(["--workdir", str(tmp_path), "--variants", "stride,maxpool"])
