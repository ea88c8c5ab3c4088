"""Each benchmark script runs end to end at tiny size (``--smoke``): correctness only, no timings."""

import json
import math
import os
import runpy
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script(script, tmp_path, *args):
  """Runs ``benchmarks/<script>.py`` with ``args`` in ``tmp_path``; the completed process."""
  env = dict(os.environ)
  # One CPU device, as benchmarked, compiled with the suite's options (tests/conftest.py).
  env["XLA_FLAGS"] = os.environ.get("CNNJAX_TEST_XLA_FLAGS", "")
  env["TFDS_DATA_DIR"] = str(tmp_path / "tfds")
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", f"{script}.py"), *args],
      cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)


def _run(script, tmp_path, *args):
  out = tmp_path / f"{script}.json"
  proc = _script(script, tmp_path, "--smoke", "--out", str(out), *args)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_train_step_smoke(tmp_path):
  contenders = "cnnjax,cnnjax_nnx,flax,torch" if _has_torch() else "cnnjax,cnnjax_nnx,flax"
  # Chunks of 4: the batch of 8 takes the 'chunked' lowering's path with two chunks.
  # Two host devices: the same step also runs data-parallel, four examples on each.
  record, stdout = _run("train_step", tmp_path, "--models", "lenet5", "--contenders", contenders,
                        "--chunk-batch", "4", "--host-devices", "2")
  assert record["chunk_batch"] == 4 and record["host_devices"] == 2
  (entry,) = record["results"]
  assert entry["model"] == "lenet5" and entry["batch"] == 8
  assert set(entry["contenders"]) == set(contenders.split(",")) | {"cnnjax[2 host devices]"}
  for s in entry["contenders"].values():
    assert s["error"] is None and s["median"] > 0 and s["final_loss"] > 0
  assert "cnnjax/flax" in entry["ratios"] and entry["ratios"]["cnnjax_nnx/cnnjax"] > 0
  assert "| lenet5 | 8 | cnnjax |" in stdout


@pytest.mark.slow
def test_conv_ops_smoke(tmp_path):
  # Chunks of one example (batch 2): the 'chunked' lowering and every 'subpixel'
  # phase run in two chunks, and the gradient cross-check covers them.
  record, stdout = _run("conv_ops", tmp_path, "--parts", "--chunk-batch", "1", "--phase-chunk", "1")
  assert record["chunk_batch"] == 1 and record["phase_chunk"] == 1
  # The script cross-checks every contender's gradients and fails on a mismatch.
  assert record["failures"] == []
  assert "Parts of the auto lowering" in stdout
  names = [r["shape"]["name"] for r in record["results"]]
  assert names == ["smoke conv", "smoke depthwise", "smoke grouped", "smoke transposed"]
  for r in record["results"]:
    assert r["auto"] in ("lax", "chunked", "matmul", "taps", "per_group", "subpixel")
    assert r["auto"] in r["ms"]
    assert {"lax", "matmul", "flax"} <= set(r["ms"])
    assert set(r["parts_ms"]) == {"forward", "input_grad", "kernel_grad"}
    assert all(v > 0 for v in r["parts_ms"].values())


@pytest.mark.slow
def test_input_pipeline_smoke(tmp_path):
  record, _ = _run("input_pipeline", tmp_path, "--datasets", "digits,mnist",
                   "--data-dir", str(tmp_path / "data"))
  by_name = {r["dataset"]: r for r in record["results"]}
  assert by_name["digits"]["image_shape"] == [8, 8, 1]
  assert by_name["mnist"]["image_shape"] == [28, 28, 1]
  for r in record["results"]:
    assert set(r["pipelines"]) == {"memory", "grain"}
    assert all(p["error"] is None and p["median"] > 0 for p in r["pipelines"].values())
    assert all(s["median"] > 0 for s in r["steps"].values())


@pytest.mark.slow
def test_gpu_resnet50_smoke(tmp_path):
  record, _ = _run("gpu_resnet50", tmp_path)
  (r,) = record["results"]
  assert r["batch"] == 2 and r["images_per_s"] > 0 and r["compile_s"] > 0
  # SGD at lr 0.1 on one repeated 2-image batch may drive the loss to 0; it must stay finite.
  assert math.isfinite(r["final_loss"]) and r["final_loss"] >= 0
  # ResNet-50's widths with one bottleneck block per stage (--smoke), at 32x32.
  assert record["stage_sizes"] == [1, 1, 1, 1]
  # The analytic count (2 x MACs of convolutions and dense layers) against XLA's cost analysis
  # of the compiled forward pass, which also counts BatchNorm, ReLU and pooling arithmetic and
  # may count a convolution's padding taps differently: within a quarter of each other.
  flops, xla = record["forward_flops_per_image"], record["xla_forward_flops_per_image"]
  assert 3e7 < flops < 2e8 and 0.75 < flops / xla < 1.25, (flops, xla)


def _has_torch():
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


@pytest.mark.slow
def test_cpu_dtype_smoke(tmp_path):
  record, stdout = _run("cpu_dtype", tmp_path)
  (entry,) = record["results"]
  assert entry["model"] == "digits_cnn"
  for dtype in ("float32", "bfloat16"):
    assert entry[dtype]["error"] is None and entry[dtype]["median"] > 0
  assert entry["bfloat16/float32"] > 0
  assert "| digits_cnn | 8 |" in stdout


@pytest.mark.slow
def test_end_to_end_smoke(tmp_path):
  record, stdout = _run("end_to_end", tmp_path)
  assert record["model"] == "digits_cnn" and record["steps"] == 12
  assert len(record["end_to_end"]) == len(record["bare_step"]) == 1
  assert record["end_to_end_median"] > 0 and record["bare_step_median"] > 0
  assert record["ratio"] == record["end_to_end_median"] / record["bare_step_median"]
  assert "end to end / bare step:" in stdout


@pytest.mark.slow
def test_strategies_smoke(tmp_path):
  # Two fake devices: the multi-device steps run with at most two queued, as the loop does.
  record, stdout = _run("strategies", tmp_path)
  assert record["args"]["devices"] == 2
  assert {(row[0], row[1]) for row in record["overhead"]} == {
      (d, s) for d in (1, 2) for s in ("pmap", "shard_map", "jit")}
  assert [row[1] for row in record["throughput"]] == ["pmap", "shard_map", "jit"]
  assert "| lenet5 | jit |" in stdout


@pytest.mark.parametrize("script", ["train_step", "first_step", "import_time", "strategies"])
def test_an_existing_out_file_is_kept_and_nothing_is_measured(tmp_path, monkeypatch, script):
  """A rerun stops at start-up, naming the file, rather than replacing an earlier record.

  The script runs as ``__main__`` in this process (``runpy``): it stops while parsing
  its arguments, before it imports jax, so a fresh interpreter would only add the
  seconds of its imports. A ``SystemExit`` with a message is what Python prints as
  one line on stderr, with no traceback.
  """
  out = tmp_path / "record.json"
  out.write_text('{"earlier": "record"}\n')
  path = os.path.join(ROOT, "benchmarks", f"{script}.py")
  monkeypatch.setattr(sys, "argv", [path, "--out", str(out)])
  monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put benchmarks/ first
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  with pytest.raises(SystemExit) as stopped:
    runpy.run_path(path, run_name="__main__")
  message = stopped.value.code
  assert isinstance(message, str), message  # a message, not a bare exit status
  assert f"--out {out} exists" in message and "--overwrite" in message, message
  assert out.read_text() == '{"earlier": "record"}\n'


def test_overwrite_is_an_explicit_choice(tmp_path):
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  try:
    import _common
  finally:
    sys.path.pop(0)
  out = tmp_path / "record.json"
  _common.check_out(str(out), overwrite=False)  # no file yet: nothing to keep
  out.write_text("{}\n")
  with pytest.raises(SystemExit, match="exists"):
    _common.check_out(str(out), overwrite=False)
  _common.check_out(str(out), overwrite=True)
  _common.write_json(str(out), {"new": 1})
  assert json.loads(out.read_text()) == {"new": 1}
