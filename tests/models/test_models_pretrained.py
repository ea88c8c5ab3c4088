"""``models.pretrained``: torchvision .pth, .safetensors (both key styles), orbax checkpoints."""

import jax
import numpy as np
import optax
import pytest

from cnnjax import models
from cnnjax.train.checkpoint import Checkpointer
from cnnjax.train.state import TrainState

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install cnnjax[torch]")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

NAME = "resnet18_cifar"
FIELDS = {"stage_sizes": (1, 1), "num_filters": 4}


def _torch_resnet_state(num_classes=7):
  """A two-stage CIFAR-stem ResNet state dict with torchvision's keys, random weights."""
  nn = torch.nn
  torch.manual_seed(0)
  net = nn.Module()
  net.conv1, net.bn1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4)
  for i, (cin, cout, stride) in enumerate([(4, 4, 1), (4, 8, 2)]):
    block = nn.Module()
    block.conv1, block.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
    block.conv2, block.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
    if stride != 1 or cin != cout:
      block.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
    setattr(net, f"layer{i + 1}", nn.Sequential(block))
  net.fc = nn.Linear(8, num_classes)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_var.uniform_(0.5, 1.5)
  return net.state_dict()


@pytest.fixture(scope="module")
def state():
  return _torch_resnet_state()


def _equal(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_pth_and_torch_keyed_safetensors_give_the_same_weights(state, tmp_path):
  torch.save(state, tmp_path / "net.pth")
  safetensors_numpy.save_file({k: v.numpy() for k, v in state.items()},
                              str(tmp_path / "net.safetensors"))
  model, variables = models.pretrained(NAME, tmp_path / "net.pth", **FIELDS)
  assert model.num_classes == 7  # Read from fc.weight.
  np.testing.assert_array_equal(variables["params"]["stage2_block0"]["conv1"]["kernel"],
                                state["layer2.0.conv1.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["stem"]["norm"]["var"],
                                state["bn1.running_var"].numpy())
  _, from_safetensors = models.pretrained(NAME, tmp_path / "net.safetensors", **FIELDS)
  _equal(from_safetensors, variables)


def test_cnnjax_safetensors_round_trip_and_new_head(state, tmp_path):
  _, variables = models.pretrained(NAME, _save_pth(state, tmp_path), **FIELDS)
  models.save_safetensors(tmp_path / "own.safetensors", variables)
  _, back = models.pretrained(NAME, tmp_path / "own.safetensors", **FIELDS)
  _equal(back, variables)
  with pytest.warns(UserWarning, match=r"7-class head; resnet18_cifar gets a freshly "
                                       r"initialised 3-class head"):
    model, new = models.pretrained(NAME, tmp_path / "own.safetensors", num_classes=3, **FIELDS)
  assert model.num_classes == 3 and new["params"]["head"]["kernel"].shape == (8, 3)
  del new["params"]["head"], variables["params"]["head"]
  _equal(new, variables)  # Everything but the head is the file's.


def _save_pth(state, tmp_path):
  torch.save(state, tmp_path / "net.pth")
  return tmp_path / "net.pth"


def test_orbax_checkpoint_directory(state, tmp_path):
  _, variables = models.pretrained(NAME, _save_pth(state, tmp_path), **FIELDS)
  train_state = TrainState.create(apply_fn=None, params=variables["params"], tx=optax.sgd(0.1),
                                  batch_stats=variables["batch_stats"],
                                  rng=jax.random.key_data(jax.random.key(0)))
  checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=False)
  checkpointer.save(5, train_state.checkpoint_items(), {})
  checkpointer.close()
  for path in (tmp_path / "checkpoints", tmp_path / "checkpoints" / "5"):
    model, restored = models.pretrained(NAME, path, **FIELDS)
    _equal(restored, variables)
    assert model.num_classes == 7


def test_another_architecture_names_the_first_differing_arrays(state, tmp_path):
  _, variables = models.pretrained(NAME, _save_pth(state, tmp_path), **FIELDS)
  models.save_safetensors(tmp_path / "own.safetensors", variables)
  with pytest.raises(ValueError, match=r"first differing arrays: params/head/kernel is \(8, 7\) "
                                       r"in the file, \(16, 7\) in the model; params/stage1_block0/"
                                       r"conv1/kernel is \(3, 3, 4, 4\) in the file"):
    models.pretrained(NAME, tmp_path / "own.safetensors", stage_sizes=(1, 1), num_filters=8)
  with pytest.raises(ValueError, match=r"the model has 'classifier.weight', the file has no such "
                                       r"array; first arrays of its .*'bn1.bias' \(4,\)"):
    models.pretrained("densenet121", tmp_path / "net.pth")
  with pytest.raises(ValueError, match=r"expected a .pth/.pt or .safetensors file"):
    (tmp_path / "weights.npz").write_bytes(b"")
    models.pretrained(NAME, tmp_path / "weights.npz")
  with pytest.raises(ValueError, match="no such file"):
    models.pretrained(NAME, tmp_path / "missing.pth")
