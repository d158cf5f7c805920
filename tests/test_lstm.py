"""The LSTM task: MNIST readers on the real files and on damaged ones, the classification chart of the DLC loss
against a hand computation, the model's input order, and training/evaluation through the CLI."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlc_core.classification_objective import SoftmaxChart, cross_entropy_landscape, one_hot
from dlc_core.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, load_mnist, read_idx, stratified_split
from dlc_core.dlc_loss import DLCConfig, DLCLoss
from dlc_core.errors import InputError
from dlc_core.models.lstm import MNIST_MEAN, MNIST_STD, LSTMClassifier, LSTMConfig
from dlc_ros.cli import main
from training.lstm import affine_warp, warp_images

REPO = Path(__file__).resolve().parents[1]
# The standard MNIST test set's class counts and first labels (published with the dataset).
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
T10K_FIRST = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
ROW = ["--mode", "row", "--hidden", "16", "--batch-size", "32", "--seed", "0", "--device", "cpu"]


def write_idx(path: Path, magic: int, array: np.ndarray, zipped: bool = False) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


@pytest.fixture(scope="module")
def mnist(shared_data: Path) -> Path:
    return shared_data / "mnist_5k"


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A gzipped IDX pair of 200 random images and labels, named as the standard training files."""
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    labels = np.arange(200) % 10
    write_idx(root / "train-images-idx3-ubyte.gz", IMAGES_MAGIC, images, zipped=True)
    write_idx(root / "train-labels-idx1-ubyte.gz", LABELS_MAGIC, labels, zipped=True)
    return root, images, labels


# ---------------------------------------------------------------- readers


def test_reads_the_standard_test_set(mnist: Path) -> None:
    images, labels = load_mnist(mnist, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels[:10].tolist() == T10K_FIRST and np.bincount(labels).tolist() == T10K_COUNTS
    assert images.max() == 255 and images.min() == 0


def test_reads_the_training_csv(mnist: Path) -> None:
    images, labels = load_mnist(mnist, "train")
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    assert labels[:20].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5, 3, 6, 1, 7, 2, 8, 6, 9]
    row = np.loadtxt(mnist / "mnist_train_5k.csv", delimiter=",", max_rows=1, dtype=np.int64)
    assert np.array_equal(images[0].ravel(), row[1:])


def test_idx_round_trip_gzipped_and_raw(small_idx: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    root, images, labels = small_idx
    x, y = load_mnist(root, "train")  # a folder without the CSV: the IDX pair
    assert np.array_equal(x, images) and np.array_equal(y, labels)
    raw = write_idx(tmp_path / "x-images-idx3-ubyte", IMAGES_MAGIC, images[:5])
    write_idx(tmp_path / "x-labels-idx1-ubyte", LABELS_MAGIC, labels[:5])
    x, y = load_mnist(raw, "test")
    assert np.array_equal(x, images[:5]) and np.array_equal(y, labels[:5])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-100], "truncated or padded"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: (0x0801).to_bytes(4, "big") + b[4:], "IDX magic 0x00000801, expected 0x00000803"),
    ],
)
def test_damaged_idx_is_refused_with_the_file_named(small_idx, tmp_path: Path, damage, message: str) -> None:
    raw = gzip.decompress((small_idx[0] / "train-images-idx3-ubyte.gz").read_bytes())
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(damage(raw))
    with pytest.raises(InputError, match=message) as err:
        read_idx(bad, IMAGES_MAGIC)
    assert str(bad) in str(err.value)


def test_cut_gzip_and_bad_csv_are_refused(small_idx, tmp_path: Path) -> None:
    cut = tmp_path / "cut-images-idx3-ubyte.gz"
    cut.write_bytes((small_idx[0] / "train-images-idx3-ubyte.gz").read_bytes()[:-40])
    with pytest.raises(InputError, match="damaged gzip data"):
        read_idx(cut, IMAGES_MAGIC)
    csv = tmp_path / "digits.csv"
    csv.write_text(",".join(["3"] + ["0"] * 784) + "\n" + ",".join(["3"] + ["0"] * 100) + "\n")
    with pytest.raises(InputError, match="row 2 has 101 values, expected 785"):
        load_mnist(csv, "train")
    lonely = write_idx(tmp_path / "lonely-images-idx3-ubyte", IMAGES_MAGIC, np.zeros((2, 28, 28)))
    with pytest.raises(InputError, match="no labels file lonely-labels-idx1-ubyte"):
        load_mnist(lonely, "test")
    with pytest.raises(InputError, match="no MNIST test data"):
        load_mnist(tmp_path, "test")


def test_cli_refuses_a_truncated_test_set_in_one_line(trained: dict[str, Path], tmp_path: Path, mnist: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    whole = (mnist / "t10k-images-idx3-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(whole)[:-784]))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes((mnist / "t10k-labels-idx1-ubyte.gz").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "dlc_ros.cli", "eval", "lstm", "--model", str(trained["two"]),
                           "--data", str(folder)], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {folder}/t10k-images-idx3-ubyte.gz: 7839232 bytes, expected "
                                                "7840016 for (10000, 28, 28) (truncated or padded file)"]  # fmt: skip


def test_stratified_split_holds_out_each_class_equally() -> None:
    labels = np.repeat(np.arange(10), 50)
    train, val = stratified_split(labels, 0.1, seed=0)
    assert len(val) == 50 and np.bincount(labels[val]).tolist() == [5] * 10
    assert not set(train) & set(val) and len(train) + len(val) == 500
    assert np.array_equal(val, stratified_split(labels, 0.1, seed=0)[1])


# ---------------------------------------------------------------- the classification chart and the DLC loss


def test_landscape_at_the_one_hot_is_the_cross_entropy() -> None:
    logits = torch.randn(5, 10)
    labels = torch.tensor([0, 3, 9, 1, 1])
    values = cross_entropy_landscape(logits)(one_hot(labels, 10)[None])
    assert torch.allclose(values[0], F.cross_entropy(logits, labels, reduction="none"), atol=1e-6)


def test_dlc_hinges_match_a_hand_computation() -> None:
    """h1, h2, h3 of METHOD.md §2 on the softmax chart, recomputed from the same noise with numpy."""
    torch.manual_seed(0)
    logits = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([2, 7, 0, 5])
    alpha, mu, sigma, k = 0.5, 0.3, 1.0, 3
    loss = DLCLoss(DLCConfig(K=k, alpha=alpha, mu=mu)).double()
    gen = torch.Generator().manual_seed(7)
    terms = loss(cross_entropy_landscape(logits), one_hot(labels, 10).double(), SoftmaxChart(sigma), gen)
    eps = sigma * torch.randn((k, 4, 10), generator=torch.Generator().manual_seed(7), dtype=torch.float64).numpy()
    lp = torch.log_softmax(logits, -1).detach().numpy()
    e = np.eye(10)[labels.numpy()]

    def ce(target: np.ndarray) -> np.ndarray:
        return -(target * lp).sum(-1)

    def softmax(z: np.ndarray) -> np.ndarray:
        z = np.exp(z - z.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    l0, l1, l2 = ce(e), ce(softmax(e + eps)), ce(softmax(e + alpha * eps))
    d2 = (eps**2).sum(-1)
    h1 = np.maximum(l0 - l2, 0)
    h2 = np.maximum(l0 - l1 + mu / 2 * d2, 0)
    h3 = np.maximum(l2 - (1 - alpha) * l0 - alpha * l1 + mu / 2 * alpha * (1 - alpha) * d2, 0)
    assert math.isclose(terms.loss.item(), (h1 + h2 + h3).mean(0).mean(), rel_tol=1e-6)  # μ is kept as a float32 buffer
    assert math.isclose(terms.h3.item(), h3.mean(), rel_tol=1e-6)  # μ is kept as a float32 buffer
    assert np.allclose(terms.landscape_at_truth.detach().numpy(), l0)
    terms.loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# ---------------------------------------------------------------- the model


def test_pixel_mode_reads_the_image_row_major_one_pixel_per_step() -> None:
    model = LSTMClassifier(LSTMConfig(mode="pixel", hidden=8))
    image = torch.arange(784, dtype=torch.float32).reshape(1, 28, 28) % 256
    seq = model.sequence(image)
    assert seq.shape == (1, 784, 1)
    r, c = 13, 27
    assert math.isclose(seq[0, 28 * r + c, 0].item(), (image[0, r, c].item() / 255 - MNIST_MEAN) / MNIST_STD, rel_tol=1e-6)
    assert LSTMClassifier(LSTMConfig(mode="row", hidden=8)).sequence(image).shape == (1, 28, 28)
    assert model.eval()(image.repeat(3, 1, 1)).shape == (3, 10)
    bias = (model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0).detach()
    forget = bias[8:16]  # chrono init: log U(1, 783)
    assert (forget >= 0).all() and (forget <= math.log(783)).all() and forget.max() > 1.0
    assert torch.equal(bias[:8], -forget)


def test_augmentation_warps_match_exact_pixel_moves() -> None:
    """A quarter turn moves every pixel centre onto a pixel centre (torch.rot90 is the reference), and bilinear
    sampling of a column ramp is exact, so a zoom of 2 must give column c the value c/2 + 6.75 (the centre half)."""
    images = torch.randint(0, 256, (2, 28, 28)).float()
    turned = affine_warp(images, torch.tensor([90.0, -90.0]), torch.ones(2))
    assert torch.allclose(turned[0], torch.rot90(images[0], 1), atol=1e-3)
    assert torch.allclose(turned[1], torch.rot90(images[1], -1), atol=1e-3)
    ramp = torch.arange(28.0).repeat(28, 1)[None]
    zoomed = affine_warp(ramp, torch.zeros(1), torch.full((1,), 2.0))
    assert torch.allclose(zoomed[0], (torch.arange(28.0) / 2 + 6.75).repeat(28, 1), atol=1e-4)
    assert warp_images(images, 0.0, 0.0, torch.Generator().manual_seed(0)) is images  # nothing asked: untouched
    drawn = warp_images(images, 15.0, 0.1, torch.Generator().manual_seed(0))
    assert drawn.shape == images.shape and not torch.allclose(drawn, images)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of pixel, row"):
        LSTMConfig(mode="column")


# ---------------------------------------------------------------- training and evaluation through the CLI


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mnist: Path) -> dict[str, Path]:
    """Row-mode DLC models after 1 step and after 2 epochs (same seed, same data)."""
    root = tmp_path_factory.mktemp("lstm")
    base = ["train", "lstm", "--data", str(mnist), *ROW]
    assert main([*base, "--steps", "1", "--epochs", "1", "--out", str(root / "one")]) == 0
    assert main([*base, "--epochs", "2", "--out", str(root / "two")]) == 0
    return {"one": root / "one", "two": root / "two"}


def card(folder: Path) -> dict:
    return json.loads((folder / "model_card.json").read_text())


def test_training_lowers_the_validation_loss(trained: dict[str, Path]) -> None:
    before, after = card(trained["one"])["metrics"], card(trained["two"])["metrics"]
    assert before["val_loss"] == pytest.approx(math.log(10), abs=0.05)  # one step in: about chance, ln 10
    assert after["val_loss"] < before["val_loss"] - 0.3
    assert after["val_accuracy"] > 3 * 0.1  # three times chance after 140 steps


def test_a_killed_run_resumes_exactly(trained: dict[str, Path], mnist: Path, tmp_path: Path) -> None:
    """Kill a 2-epoch run once its epoch-1 state exists; --resume must then end with the uninterrupted weights."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dlc_ros.cli", "train", "lstm", "--data", str(mnist), *ROW, "--epochs", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "train_state.pt").exists() and proc.poll() is None:
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert card(out)["train"]["steps"] == 140, "the run ended before it could be killed in epoch 2"
    assert main(["train", "lstm", "--data", str(mnist), *ROW, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    a = torch.load(trained["two"] / "model.pt", weights_only=True)
    b = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert card(out)["train"]["steps"] == 280 and card(out)["train"]["train_digits"] == 4500
    assert main(["train", "lstm", "--data", str(mnist), *ROW, "--epochs", "3", "--out", str(out), "--resume", "--beta", "2"]) == 2


def test_card_records_the_run(trained: dict[str, Path]) -> None:
    c = card(trained["two"])
    assert c["task"] == "lstm" and c["backbone"] == "lstm" and c["config"] == {"mode": "row", "hidden": 16}
    assert c["dlc"]["enabled"] and c["dlc"]["noise"]["sigma"] == {"logit": 1.0}
    assert "train lstm" in c["train"]["command"] and c["train"]["seed"] == 0


def test_eval_writes_the_json_contract(trained: dict[str, Path], mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "lstm.json"
    assert main(["eval", "lstm", "--model", str(trained["two"]), "--data", str(mnist), "--samples", "500",
                 "--json", str(out), "--device", "cpu"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert {"task", "model", "data", "command", "samples", "skipped", "time_ms", "peak_rss_mb", "device", "accuracy"} <= set(result)
    assert result["samples"] == 500 and result["task"] == "lstm"
    from dlc_core.models.lstm import load_lstm_model

    model, _ = load_lstm_model(trained["two"], torch.device("cpu"))
    images, labels = load_mnist(mnist, "test")
    with torch.no_grad():
        predicted = model(torch.as_tensor(images[:500])).argmax(1).numpy()
    assert result["accuracy"] == pytest.approx((predicted == labels[:500]).mean(), abs=1e-12)


def test_an_lstm_checkpoint_loads_only_as_lstm(trained: dict[str, Path], mnist: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dlc_ros.cli", "eval", "registration", "--model", str(trained["two"])],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "is a 'lstm' model, expected a 'registration' model" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dlc_ros.cli", "eval", "lstm", "--model", str(REPO / "models" / "dcp_shapes"),
                           "--data", str(mnist)], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "is a 'registration' model, expected a 'lstm' model" in proc.stderr
