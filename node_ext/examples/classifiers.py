"""The image classifiers compared in Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary
Differential Equations" (NeurIPS 2018), section 7.1 and Table 1.

Every convolutional network here shares one skeleton: a downsampling stem of strided
convolutions, a feature body, and a head (normalisation, ReLU, global average pooling, a linear
layer). Only the body changes:

* ODE-Net: one ODE block whose dynamics are two 3x3 convolutions that also see the time as an
  extra channel (:class:`node_ext.nn.ConvODEF`), integrated over [0, 1] by an adaptive solver;
  gradients by the adjoint method, so the memory of a training step does not depend on the
  number of solver steps.
* RK-Net: the same network, its gradients obtained by backpropagating through the solver's
  operations (``adjoint=False``): the memory grows with the number of evaluations.
* ResNet: six residual blocks x + f(x), f being the ODE-Net's dynamics without the time channel;
  one residual block is one Euler step of size 1 with its own weights.

The 1-layer MLP baseline has one hidden layer whose width is chosen so that it has about as many
parameters as the ODE-Net (the paper's 300 hidden units on MNIST come out of the same rule).

The stem adapts to the image size: 28x28 MNIST goes 28 -> 26 (3x3 convolution without padding)
-> 13 -> 6 (two stride-2 convolutions), as in the paper; small images such as scikit-learn's 8x8
digits keep their size in the first convolution and are halved once (8 -> 4), and their head
pools to 2x2 instead of 1x1 (see pooled_side).

The module also holds what the `odenet` and `nfe` examples share around the networks: the image
data (standardised, optionally subsampled), a random stream per task that checkpoints like a
module, the paper's step learning-rate schedule and one epoch of minibatch SGD.
"""
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ConvODEF, ODEBlock
from . import datasets

GROUPS = 32
CHANNELS_PER_GROUP = 2


def group_norm(channels):
    """GroupNorm with up to 32 groups of at least two channels (the paper's 32 groups at width 64).

    With one channel per group GroupNorm would standardise each channel of each image over its
    pixels, removing the per-channel means that the head's average pooling reads."""
    return nn.GroupNorm(max(1, min(GROUPS, channels // CHANNELS_PER_GROUP)), channels)


def conv_stem(in_channels, width, image_size):
    """Downsampling convolutions: a 3x3 convolution, then stride-2 4x4 convolutions until the side
    is at most 7. Returns (module, side of its output)."""
    pad = 0 if image_size >= 16 else 1
    side = image_size + 2 * pad - 2
    layers = [nn.Conv2d(in_channels, width, 3, 1, pad)]
    while side > 7:
        layers += [group_norm(width), nn.ReLU(inplace=True), nn.Conv2d(width, width, 4, 2, 1)]
        side //= 2
    return nn.Sequential(*layers), side


def pooled_side(side):
    """Side of the head's average pooling: global (1x1) for maps of side 6 and more (MNIST, as in
    the paper), 2x2 for the 4x4 maps of small images, where a global average would throw away
    where the strokes are and slow training down several times."""
    return 1 if side >= 6 else 2


def classifier_head(width, classes, side):
    """Normalisation, ReLU, average pooling (see pooled_side) and the linear read-out."""
    pool = pooled_side(side)
    return nn.Sequential(group_norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(pool), nn.Flatten(),
                         nn.Linear(width * pool * pool, classes))


class ResidualBlock(nn.Module):
    """x + f(x) with f = conv3x3 -> GroupNorm -> ReLU -> conv3x3 -> GroupNorm: the ODE-Net's
    dynamics without the time channel, i.e. one Euler step of size 1."""

    def __init__(self, channels):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), group_norm(channels),
                               nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                               group_norm(channels))

    def forward(self, x):
        return x + self.f(x)


class ConvClassifier(nn.Module):
    """stem -> body -> head. ``ode`` is the body when it is an ODE block (else None)."""

    def __init__(self, stem, body, head):
        super().__init__()
        self.stem, self.body, self.head = stem, body, head

    @property
    def ode(self):
        return self.body if isinstance(self.body, ODEBlock) else None

    def features(self, x):
        """The stem's output: the initial state of the ODE block."""
        return self.stem(x)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


class MLPClassifier(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear: the paper's 1-layer MLP."""

    def __init__(self, in_features, hidden, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


def ode_net(image_shape, classes, width=64, method="dopri5", tol=1e-3, adjoint=True):
    """The ODE-Net (``adjoint=True``) or the RK-Net (``adjoint=False``) for images of shape
    (channels, side, side)."""
    channels, side = image_shape[0], image_shape[-1]
    stem, out_side = conv_stem(channels, width, side)
    block = ODEBlock(ConvODEF(width, norm="group", activation=nn.ReLU), integration_time=1.0, method=method,
                     rtol=tol, atol=tol, adjoint=adjoint)
    return ConvClassifier(stem, block, classifier_head(width, classes, out_side))


def res_net(image_shape, classes, width=64, blocks=6):
    """The ResNet baseline: the same stem and head around `blocks` residual blocks."""
    channels, side = image_shape[0], image_shape[-1]
    stem, out_side = conv_stem(channels, width, side)
    body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
    return ConvClassifier(stem, body, classifier_head(width, classes, out_side))


def mlp_net(image_shape, classes, parameter_budget):
    """The 1-layer MLP with about `parameter_budget` parameters (at least 16 hidden units)."""
    in_features = 1
    for s in image_shape:
        in_features *= s
    hidden = max(16, int(round((parameter_budget - classes) / (in_features + 1 + classes))))
    return MLPClassifier(in_features, hidden, classes)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def solver_counts(model):
    """(forward NFE, backward NFE) of the last solve of `model`'s ODE block; (0, 0) without one."""
    ode = getattr(model, "ode", None)
    if ode is None:
        return 0, 0
    return ode.nfe, ode.nfe_backward


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    """Fraction of correctly classified samples, evaluated in batches (the model is put in eval mode
    and returned to its previous mode)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i:i + batch]).argmax(dim=1) == y[i:i + batch]).sum())
    model.train(was_training)
    return correct / max(1, len(x))


@dataclass
class ImageData:
    """Standardised train and test images (N, C, H, W) with their labels, on one device."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def classes(self):
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_images(data_dir, device, gen, train_limit=None, test_limit=None):
    """MNIST from data_dir, else scikit-learn's 8x8 digits, standardised by the training set's mean
    and std; `train_limit` / `test_limit` keep a random subset (drawn with `gen`) of that size."""
    xtr, ytr, xte, yte = datasets.images(data_dir)
    if train_limit is not None and train_limit < len(xtr):
        keep = torch.randperm(len(xtr), generator=gen)[:train_limit]
        xtr, ytr = xtr[keep], ytr[keep]
    if test_limit is not None and test_limit < len(xte):
        keep = torch.randperm(len(xte), generator=gen)[:test_limit]
        xte, yte = xte[keep], yte[keep]
    mean, std = xtr.mean(), xtr.std()
    return ImageData(((xtr - mean) / std).to(device), ytr.to(device), ((xte - mean) / std).to(device),
                     yte.to(device), "mnist" if data_dir else "digits8x8")


def step_learning_rate(base, epoch, horizon):
    """The paper's piecewise-constant schedule, scaled to `horizon` epochs: base for the first
    half, base/10 up to three quarters, base/100 after. It depends on the epoch only (not on how
    many epochs this run was asked for), so resumed runs follow the same schedule."""
    if epoch < 0.5 * horizon:
        return base
    return base * (0.1 if epoch < 0.75 * horizon else 0.01)


def train_epoch(model, optimizer, data, batch, gen, lr):
    """One epoch of minibatch training with cross-entropy (shuffled by `gen`). Returns the mean
    loss, training accuracy, per-step losses and per-step forward / backward NFE, and the seconds."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(data.x_train), generator=gen).to(data.x_train.device)
    losses, nfe, nfe_b, correct = [], [], [], 0
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        logits = model(data.x_train[idx])
        loss = F.cross_entropy(logits, data.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        correct += int((logits.detach().argmax(dim=1) == data.y_train[idx]).sum())
        forward, backward = solver_counts(model)
        nfe.append(forward)
        nfe_b.append(backward)
    return dict(loss=sum(losses) / len(losses), train_acc=correct / len(order), step_losses=losses,
                step_nfe=nfe, step_nfe_b=nfe_b, seconds=time.perf_counter() - start)
