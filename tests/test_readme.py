"""The README's self-contained Python examples run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

# The README keeps one example, the ops tour; the examples of the sections it
# summarises live in the guide pages and run in tests/docs/test_guide_examples.py.
SELF_CONTAINED = {
    "ops tour": "ops.conv_reference(x, w, padding=\"SAME\")",
}


def _block(marker):
  found = [b for b in BLOCKS if marker in b]
  assert len(found) == 1, f"README should hold one python block with {marker!r}, found {len(found)}"
  return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SELF_CONTAINED))
def test_readme_example_runs(name, tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  namespace = {"__name__": "readme_example"}
  exec(compile(_block(SELF_CONTAINED[name]), f"README:{name}", "exec"), namespace)
  # Examples written as tests are called, as pytest would.
  for key, value in list(namespace.items()):
    if key.startswith("test_") and callable(value):
      value()
