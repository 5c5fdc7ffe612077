"""The fixed model: presets, training, prediction and embeddings. torch lives here and nowhere else.

The default preset ``dcai2021`` is the Data-Centric AI Competition 2021 model: a ResNet50 with
random weights cut after its first stage (Keras' ``conv2_block3_out``), global average pooling
and a linear layer, trained at 32x32 with Adam (lr 1e-4), batch 8, keeping the weights with the
best validation accuracy. It is initialised and normalised as the Keras original was.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torchvision

from .errors import ConfigError
from .fsutil import atomic_write_bytes
from .threads import ThreadGovernor

# keras.applications.resnet.preprocess_input ("caffe"): RGB -> BGR, minus the ImageNet means.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
EVAL_BATCH = 512


class FixedModel(nn.Module):
    """A backbone, global average pooling and a linear head; ``embed`` gives the pooled features."""

    def __init__(self, backbone: nn.Module, width: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.backbone(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def keras_like(module: nn.Module) -> nn.Module:
    """Keras defaults: glorot-uniform kernels, zero biases, BatchNorm momentum 0.99, eps 1.001e-5."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.momentum, m.eps = 0.01, 1.001e-5
    return module


def resnet50_stage1(num_classes: int) -> FixedModel:
    net = torchvision.models.resnet50(weights=None)
    backbone = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return keras_like(FixedModel(backbone, 256, num_classes))


def full_resnet(name: str) -> Callable[[int], FixedModel]:
    def build(num_classes: int) -> FixedModel:
        net = getattr(torchvision.models, name)(weights=None)
        width = net.fc.in_features
        backbone = nn.Sequential(*list(net.children())[:-2])
        return FixedModel(backbone, width, num_classes)
    return build


PRESETS: dict[str, Callable[[int], FixedModel]] = {
    "dcai2021": resnet50_stage1,
    "resnet18": full_resnet("resnet18"),
    "resnet50": full_resnet("resnet50"),
}


def build_model(preset: str, num_classes: int) -> FixedModel:
    if preset not in PRESETS:
        raise ConfigError(f"dcloop.toml: [model] preset = {preset!r} is not one of {', '.join(PRESETS)}.")
    return PRESETS[preset](num_classes)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"[model] device = {name!r} is not a torch device (try auto, cpu, cuda).") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"[model] device = {name!r}, but torch sees no CUDA GPU here; use auto or cpu.")
    return device


def to_input(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, 3, H, W) RGB -> float32 BGR minus the means, once for the whole set."""
    x = torch.from_numpy(pixels).to(device).flip(1).float()
    return x - torch.tensor(CAFFE_BGR_MEAN, device=device).view(1, 3, 1, 1)


@dataclass
class Trained:
    model: FixedModel
    best_epoch: int
    best_val_accuracy: float | None
    history: list[dict] = field(default_factory=list)
    images_per_s: float = 0.0
    seconds: float = 0.0
    threads: int = 0  # the count training started with
    threads_used: str = ""  # "2", or "2>1": auto went on with one thread (ThreadGovernor.used); "" on a GPU
    # Training dynamics: each row's softmax averaged over the epochs up to the kept weights' (all
    # epochs without validation rows). For a training row it is what the network said while
    # learning it: a wrong label is learned late, so its mean stays low while the right labels are
    # fit. Past the best epoch the network memorizes wrong labels too (measured: averaged over all
    # 100 epochs of the recipe, the dynamics hid planted errors). For a validation row it is out of sample.
    train_dynamics: np.ndarray | None = None
    val_dynamics: np.ndarray | None = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def step_seconds(settings, num_classes: int, device: torch.device, steps: int = 5,
                 give_up_after: float = np.inf) -> float:
    """Median seconds of one training step on random data with a throwaway model (inf past the budget)."""
    model = build_model(settings.preset, num_classes).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
    size = settings.image_size
    x = torch.randn(settings.batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (settings.batch_size,), device=device)
    times, started = [], time.perf_counter()
    for _ in range(steps + 1):
        step_started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - step_started)
        if time.perf_counter() - started > give_up_after:
            return np.inf
    return float(np.median(times[1:]))


def time_threads(settings, num_classes: int, device: torch.device) -> dict[int, float]:
    """Seconds of a training step at 1 thread and at all usable cores, timed now (the median of 5 steps).

    All cores are given up on early (inf) when far slower than 1 thread: under load two threads can
    run 10-100x slower than one. Timed once each: a wrong start is put right while training (see
    ThreadGovernor), and the timing runs before every training.
    """
    cores = usable_cores()
    previous, timed = torch.get_num_threads(), {1: np.inf, cores: np.inf}
    try:
        for threads in (1, cores):
            torch.set_num_threads(threads)
            budget = 3 * 6 * min(timed.values()) if np.isfinite(min(timed.values())) else np.inf
            timed[threads] = step_seconds(settings, num_classes, device, give_up_after=budget)
    finally:
        torch.set_num_threads(previous)
    return timed


def plan_threads(settings, num_classes: int, device: torch.device) -> ThreadGovernor:
    """``[model] threads``: N > 0 as given; 0 (auto, the default; -1 too) the faster of 1 and all cores,
    timed now, dropping to 1 thread while training if steps get slower than 1 thread was (see threads.py).

    A fixed count is reproducible: same data, settings, seed and count, same weights. Auto is not
    bit for bit (the count can change with the machine's load), but the results row says which
    counts a training used; pin that count to repeat it. The count moves floating-point noise only.
    """
    if settings.threads > 0 or device.type != "cpu":
        return ThreadGovernor(settings.threads or torch.get_num_threads())
    if usable_cores() == 1:
        return ThreadGovernor(1)
    timed = time_threads(settings, num_classes, device)
    return ThreadGovernor(min(timed, key=timed.get), one_thread_step_s=timed[1])


def pick_threads(settings, num_classes: int, device: torch.device) -> int:
    """The thread count a training under ``settings`` starts with (see plan_threads)."""
    return plan_threads(settings, num_classes, device).threads


def train(pixels: np.ndarray, labels: np.ndarray, val_pixels: np.ndarray, val_labels: np.ndarray,
          num_classes: int, settings, progress: Callable[[str], None] = lambda m: None,
          should_stop: Callable[[], bool] = lambda: False) -> Trained:
    """Train the fixed model from scratch; keep the weights of the best validation accuracy.

    ``settings`` is the [model] config. Same data, settings, seed and a fixed thread count give the
    same weights on CPU. Without validation rows the last epoch's weights are kept.
    """
    device = pick_device(settings.device)
    previous_threads = torch.get_num_threads()
    governor = plan_threads(settings, num_classes, device)
    torch.set_num_threads(governor.threads)
    try:
        return fit(pixels, labels, val_pixels, val_labels, num_classes, settings, device, progress, should_stop,
                   governor)
    finally:
        torch.set_num_threads(previous_threads)


def fit(pixels, labels, val_pixels, val_labels, num_classes, settings, device, progress, should_stop,
        governor: ThreadGovernor) -> Trained:
    torch.manual_seed(settings.seed)
    # channels_last makes every convolution take oneDNN's path, measured faster at batch 8 here.
    model = build_model(settings.preset, num_classes).to(device).to(memory_format=torch.channels_last)
    # foreach: one kernel per op for all parameters, the same numbers as the default per-tensor loop.
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, eps=1e-7, foreach=True)
    loss_fn = nn.CrossEntropyLoss()
    x = to_input(pixels, device).contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(np.array(labels), dtype=torch.long, device=device)
    x_val = to_input(val_pixels, device).contiguous(memory_format=torch.channels_last)
    y_val = torch.as_tensor(np.array(val_labels), dtype=torch.long, device=device)
    order = torch.Generator().manual_seed(settings.seed)  # on the CPU: the same order on every device
    best = Trained(model, 0, None, threads=governor.threads)
    best_state = None
    train_softmax = torch.zeros(len(x), num_classes, device=device)
    val_softmax = torch.zeros(len(x_val), num_classes, device=device)
    start, seen = time.perf_counter(), 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total_loss = torch.zeros((), device=device)
        for batch in torch.randperm(len(x), generator=order).to(device).split(settings.batch_size):
            step_started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            logits = model(x[batch])
            loss = loss_fn(logits, y[batch])
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(batch)
            train_softmax[batch] += torch.softmax(logits.detach().float(), 1)
            if governor.step(time.perf_counter() - step_started) != torch.get_num_threads():
                torch.set_num_threads(governor.threads)
                progress(f"steps on {governor.started_with} threads got slower than 1 thread was "
                         f"(the machine is busy): going on with 1 thread")
        seen += len(x)
        val_accuracy = None
        if len(x_val):
            val_proba = softmax(model, x_val)
            val_softmax += val_proba
            val_accuracy = int((val_proba.argmax(1) == y_val).sum()) / len(x_val)
        record = {"epoch": epoch, "loss": float(total_loss) / max(len(x), 1), "val_accuracy": val_accuracy}
        best.history.append(record)
        if val_accuracy is not None and (best.best_val_accuracy is None or val_accuracy > best.best_val_accuracy):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best.best_epoch, best.best_val_accuracy = epoch, val_accuracy
            softmax_at_best = (train_softmax.clone(), val_softmax.clone())
        elapsed = time.perf_counter() - start
        progress(f"epoch {epoch}/{settings.epochs}  loss {record['loss']:.3f}"
                 + (f"  val {val_accuracy:.3f}" if val_accuracy is not None else "")
                 + f"  ({seen / elapsed:.0f} img/s, {governor.threads} thread(s))")
        if should_stop():
            break
    if best_state is None:
        best.best_epoch = len(best.history)
        softmax_at_best = (train_softmax, val_softmax)
    else:
        model.load_state_dict(best_state)
    best.model = model.to(memory_format=torch.contiguous_format)
    best.train_dynamics, best.val_dynamics = (
        (total / max(best.best_epoch, 1)).cpu().numpy() for total in softmax_at_best)
    best.seconds = time.perf_counter() - start
    best.images_per_s = seen / best.seconds if best.seconds else 0.0
    best.threads_used = governor.used() if device.type == "cpu" else ""
    best.model.eval()
    return best


@torch.inference_mode()
def softmax(model: FixedModel, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities for an input tensor, in eval mode, in chunks."""
    was_training = model.training
    model.eval()
    out = torch.cat([torch.softmax(model(xb).float(), 1) for xb in x.split(EVAL_BATCH)])
    model.train(was_training)
    return out


@torch.no_grad()
def predict(model: FixedModel, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and pooled embeddings for uint8 (N, 3, H, W) pixels."""
    device = next(model.parameters()).device
    model.eval()
    probs, embeddings = [], []
    for chunk in np.array_split(pixels, max(1, -(-len(pixels) // EVAL_BATCH))):
        if not len(chunk):
            continue
        features = model.embed(to_input(chunk, device))
        probs.append(torch.softmax(model.head(features), 1).cpu().numpy())
        embeddings.append(features.cpu().numpy())
    if not probs:
        width = model.head.in_features
        return np.zeros((0, model.head.out_features), np.float32), np.zeros((0, width), np.float32)
    return np.concatenate(probs), np.concatenate(embeddings)


def to_bytes(trained: Trained) -> bytes:
    """A training as bytes, to pass from a worker process (dcloop.networks) to the sync."""
    buffer = io.BytesIO()
    torch.save(trained, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> Trained:
    """``to_bytes``' training back; only for bytes this process's own workers made (it unpickles)."""
    return torch.load(io.BytesIO(data), weights_only=False)


def save_checkpoint(trained: Trained, path, meta: dict) -> None:
    """The best weights and what they were trained on, written atomically."""
    buffer = io.BytesIO()
    torch.save({"state_dict": trained.model.state_dict(), "meta": meta}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path, device: str = "cpu") -> tuple[FixedModel, dict]:
    """A saved run's model, ready to predict, and the meta saved with it (version, classes, model config)."""
    saved = torch.load(path, map_location=pick_device(device), weights_only=True)
    meta = saved["meta"]
    model = build_model(meta["model"]["preset"], len(meta["classes"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(pick_device(device)).eval(), meta
