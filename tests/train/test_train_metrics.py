"""Host-side metrics, the metrics file and the device-copy check of Parallel.host_state."""

import json
import sys

import jax
import numpy as np
import pytest
from flax import struct

from cnnjax.train import metrics as metrics_lib
from cnnjax.train.parallel import Parallel


def test_sum_and_summarize_count_examples_not_steps():
  steps = [{"loss_sum": 4.0, "correct": 3.0, "count": 4.0, "grad_norm": 1.0},
           {"loss_sum": 1.0, "correct": 1.0, "count": 1.0, "grad_norm": 3.0}]
  summed = metrics_lib.sum_metrics(steps)
  assert summed == {"loss_sum": 5.0, "correct": 4.0, "count": 5.0, "grad_norm": 2.0}
  from cnnjax.train.steps import summarize
  out = summarize(summed)
  # Ratios of small exact sums: approx's 1e-6 relative.
  assert out["loss"] == pytest.approx(1.0) and out["accuracy"] == pytest.approx(0.8)


def test_first_nonfinite_names_the_step():
  steps = [{"loss_sum": 1.0, "skipped": 0.0}, {"loss_sum": np.nan, "skipped": 1.0},
           {"loss_sum": np.inf, "skipped": 0.0}]
  assert metrics_lib.first_nonfinite(steps, first_step=11) == 13  # a skipped step is not a stop
  assert metrics_lib.first_nonfinite(steps[:2], first_step=11) is None


def test_writer_only_writes_when_enabled_and_truncates_on_resume(tmp_path):
  writer = metrics_lib.MetricsWriter(str(tmp_path))
  for step in (1, 2, 3):
    writer.write(step, "train", {"loss": np.float32(0.5), "accuracy": 1})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "spl')  # a line cut by a kill
  assert [e["step"] for e in metrics_lib.read_events(str(tmp_path / "metrics.jsonl"))] == [1, 2, 3]
  metrics_lib.truncate_events(str(tmp_path / "metrics.jsonl"), 2)
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2]
  quiet = metrics_lib.MetricsWriter(str(tmp_path / "other"), enabled=False)
  event = quiet.write(5, "eval", {"loss": 1.0})
  assert event == {"step": 5, "split": "eval", "loss": 1.0}
  assert not (tmp_path / "other").exists()


def test_plots_are_written(tmp_path):
  writer = metrics_lib.MetricsWriter(str(tmp_path))
  for step in (1, 2):
    writer.write(step, "train", {"loss": 1.0 / step, "accuracy": 0.5 * step})
  writer.write(2, "eval", {"loss": 0.7, "accuracy": 0.6})
  paths = metrics_lib.plot_curves(str(tmp_path / "metrics.jsonl"), str(tmp_path / "plots"))
  assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["accuracy.png", "loss.png"]
  with open(paths[0], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_without_tensorboardx_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import raises ImportError
  with pytest.raises(ValueError, match="pip install tensorboardX"):
    metrics_lib.MetricsWriter(str(tmp_path), tensorboard=True)


def test_tensorboard_event_file_reads_back(tmp_path):
  pytest.importorskip("tensorboardX", reason="the TensorBoard writer is the tensorboard extra")
  tf = pytest.importorskip("tensorflow", reason="read back with TensorFlow's reader (the prepare extra)")
  writer = metrics_lib.MetricsWriter(str(tmp_path), tensorboard=True)
  writer.write(2, "train", {"loss": 1.5, "accuracy": 0.25, "images_per_sec": np.float32(300.0)})
  writer.write(4, "train", {"loss": 0.75, "accuracy": 0.5, "note": "not a scalar"})
  writer.write(4, "eval", {"loss": 1.0, "count": 10})
  writer.close()
  files = list((tmp_path / "tensorboard").iterdir())
  assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
  scalars = {(v.tag, e.step): v.simple_value
             for e in tf.compat.v1.train.summary_iterator(str(files[0])) for v in e.summary.value}
  # Float32 in the event proto: values that are exact binary fractions read back exactly.
  assert scalars == {("train/loss", 2): 1.5, ("train/accuracy", 2): 0.25,
                     ("train/images_per_sec", 2): 300.0, ("train/loss", 4): 0.75,
                     ("train/accuracy", 4): 0.5, ("eval/loss", 4): 1.0, ("eval/count", 4): 10.0}


@struct.dataclass
class _State:
  batch_stats: dict


def test_host_state_refuses_device_copies_that_differ():
  parallel = Parallel("pmap", jax.local_devices()[:2])
  device_state = parallel.put_state(_State({"mean": np.zeros(3, np.float32)}))
  assert np.array_equal(parallel.host_state(device_state).batch_stats["mean"], np.zeros(3))
  different = np.stack([np.zeros(3, np.float32), np.ones(3, np.float32)])
  device_state = _State({"mean": jax.device_put(different, parallel._local_split)})
  with pytest.raises(ValueError, match=r"device copies of batch_stats\['mean'\] differ"):
    parallel.host_state(device_state)


def test_plots_have_a_title_and_name_the_data_splits(tmp_path, monkeypatch):
  import matplotlib.figure
  from cnnjax.train import config as config_lib
  writer = metrics_lib.MetricsWriter(str(tmp_path))
  writer.write(1, "train", {"loss": 1.0, "accuracy": 0.5})
  writer.write(1, "eval", {"loss": 0.7, "accuracy": 0.6})
  figures = []
  save = matplotlib.figure.Figure.savefig
  monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                      lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k))[1])
  config = config_lib.base_config()  # digits_cnn on digits, evaluated on the test split.
  metrics_lib.plot_run(str(tmp_path), config)
  assert len(figures) == 2
  for fig in figures:
    (ax,) = fig.axes
    assert ax.get_title() == f"digits_cnn on digits ({tmp_path})"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train split", "test split, each epoch"]  # Not "eval".


def test_progress_without_a_terminal_is_lines_not_carriage_returns():
  import io
  out = io.StringIO()  # Not a terminal, as a log file or CI.
  bar = metrics_lib.progress_bar(500, 0, "digits_cnn/digits", file=out, interval_s=3600)
  for step in range(500):
    bar.update(1)
    bar.set_postfix(loss="0.1000")
  bar.write("epoch 1/1 step 500")
  bar.close()
  text = out.getvalue()
  assert "\r" not in text
  assert text.splitlines() == ["epoch 1/1 step 500", text.splitlines()[-1]]
  assert text.splitlines()[-1].startswith("digits_cnn/digits: step 500/500 (100%)")
  assert text.splitlines()[-1].endswith("loss=0.1000")
  every = io.StringIO()
  bar = metrics_lib.progress_bar(3, 0, file=every, interval_s=0.0)  # A line per interval.
  for _ in range(3):
    bar.update(1)
  assert len(every.getvalue().splitlines()) == 3
