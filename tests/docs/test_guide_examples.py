"""The self-contained Python examples of the guide pages run as written.

The guides hold the examples the README used to hold. An example still
verbatim in the README is run by ``tests/test_readme.py``; any other is run
here, so each runs once.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / "getting-started.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)

# Examples that need nothing but the package (others need a trained run, a
# user's files or downloaded weights, and are exercised by their own tests).
SELF_CONTAINED = {
    "ops tour": ("getting-started.md", "ops.conv_reference(x, w, padding=\"SAME\")"),
    "layers": ("layers-and-blocks.md", "class Net(nn.Module)"),
    "blocks": ("layers-and-blocks.md", "class TinyResNet(nn.Module)"),
    "data": ("data.md", "info = data.dataset_info(\"digits\")"),
    "shift equivariance": ("equivariance.md", "def test_my_conv_commutes_with_shifts"),
    "nnx": ("nnx.md", "optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)"),
    "nnx training": ("nnx.md", "summary = train.train_and_evaluate(config, \"runs/nnx-example\""),
}


def _block(page_name, marker):
  page = next(p for p in PAGES if p.name == page_name)
  found = [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if marker in b]
  assert len(found) == 1, f"{page_name} should hold one python block with {marker!r}, found {len(found)}"
  return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SELF_CONTAINED))
def test_guide_example_runs(name, tmp_path, monkeypatch, capsys):
  block = _block(*SELF_CONTAINED[name])
  if block in README_BLOCKS:
    return  # the same text is run by tests/test_readme.py
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.chdir(tmp_path)  # Examples that write runs/ write them here.
  namespace = {"__name__": "guide_example"}
  exec(compile(block, f"docs:{name}", "exec"), namespace)
  for key, value in list(namespace.items()):
    if key.startswith("test_") and callable(value):
      value()
  if name == "layers":
    assert "(8, 10)" in capsys.readouterr().out
  if name == "nnx training":
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) > 0.5
    assert (tmp_path / "runs" / "nnx-example" / "summary.json").is_file()
