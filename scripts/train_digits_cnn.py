"""Train the digits CNN once and write its float weights (``sw/digits_cnn.npz``).

    pip install -e '.[torch]'
    python scripts/train_digits_cnn.py [--out sw/digits_cnn.npz] [--seed 0]

The network (:func:`systolix.sw.models.digits_cnn`): conv 3x3, 16 channels, padding 1, ReLU ->
conv 3x3 stride 2, 32 channels, padding 1, ReLU -> global average pool -> dense 10, on the 8x8
digits of :func:`systolix.sw.models.digits_split` (training split only), pixels scaled to 0..1
for training; the scaling is folded into the first convolution, so the written model reads raw
pixel values 0..16.

Training: 60 epochs in float, then 60 epochs of quantization-aware fine-tuning at W4/A4 for the
12-bit accumulator of the default array (weights per output channel, symmetric, each channel's
scale the larger of its largest magnitude over 7 and the one at which it meets the A2Q+ bound
for ``P`` = 12, as :func:`systolix.sw.a2q.accumulator_aware_quantize`'s coarsest candidate;
activations unsigned with a learned clipping bound, PACT; straight-through rounding), so that
the float weights keep their accuracy when :func:`systolix.sw.qmodel.quantize` quantizes them
after training with A2Q+ at ``P`` = 12. The learned
bounds of the two convolutions' ReLUs are part of the float model (``clip``); the quantizer
folds them into the highest activation code. Adam with weight
decay, deterministic on the CPU (one thread, a fixed seed): about 20 s. Prints the test accuracy
of the float and the fake-quantized module and of the written
:class:`~systolix.sw.models.FloatModel` (equal to the float module's).
"""

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from systolix.sw.a2q import weight_budget
from systolix.sw.models import Conv2d, Dense, FloatModel, GlobalAvgPool, accuracy, digits_split

CHANNELS = (16, 32)
BITS = 4
ACCUMULATOR_BITS = 12


def straight_through(x, rounded):
    """``rounded`` forward, the identity backward."""
    return x + (rounded - x).detach()


def fake_quantize_weight(weight):
    """Symmetric per-output-channel codes ``-(2^(b-1)-1)..2^(b-1)-1``, scale from the largest
    magnitude or, if coarser, from the A2Q+ budget (:func:`systolix.sw.a2q.weight_budget`: the
    sums of the positive and of the negative codes of a channel at most ``(2^(P-1) - 1) /
    (2^b - 1)`` for ``b``-bit unsigned inputs)."""
    high = 2 ** (BITS - 1) - 1
    dims = tuple(range(1, weight.ndim))
    real = weight.detach()
    budget = weight_budget("a2q+", ACCUMULATOR_BITS, BITS, False)
    sums = torch.maximum(real.clamp_min(0).sum(dim=dims, keepdim=True),
                         (-real).clamp_min(0).sum(dim=dims, keepdim=True))
    scale = torch.maximum(real.abs().amax(dim=dims, keepdim=True) / high,
                          sums / budget).clamp_min(1e-8)
    return straight_through(weight, torch.clamp(torch.round(weight / scale), -high, high) * scale)


class Activation(nn.Module):
    """ReLU; when quantizing, clipped at a learned bound (PACT) and rounded to ``2^b`` levels."""

    def __init__(self):
        super().__init__()
        self.bound = nn.Parameter(torch.tensor(4.0))
        self.quantizing = False

    def forward(self, x):
        x = torch.relu(x)
        if not self.quantizing:
            return x
        x = torch.minimum(x, self.bound)
        scale = self.bound / (2 ** BITS - 1)
        return straight_through(x, torch.round(x / scale) * scale)


class Network(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, CHANNELS[0], 3, padding=1)
        self.conv2 = nn.Conv2d(CHANNELS[0], CHANNELS[1], 3, stride=2, padding=1)
        self.linear = nn.Linear(CHANNELS[1], 10)
        self.activations = nn.ModuleList(Activation() for _ in range(3))
        self.quantizing = False

    def quantize(self, on):
        self.quantizing = on
        for activation in self.activations:
            activation.quantizing = on

    def forward(self, x):
        weight = fake_quantize_weight if self.quantizing else (lambda w: w)
        if self.quantizing:
            levels = 2 ** BITS - 1
            x = straight_through(x, torch.clamp(torch.round(x * levels), 0, levels) / levels)
        first, second, pooled = self.activations
        x = first(nn.functional.conv2d(x, weight(self.conv1.weight), self.conv1.bias,
                                       padding=1))
        x = second(nn.functional.conv2d(x, weight(self.conv2.weight), self.conv2.bias,
                                        stride=2, padding=1))
        x = pooled(x.mean(dim=(2, 3)))
        return nn.functional.linear(x, weight(self.linear.weight), self.linear.bias)


def to_float_model(network, scale):
    """The :class:`FloatModel` of the trained network for inputs ``scale`` times larger."""
    def conv_weight(conv):
        return conv.weight.detach().double().permute(2, 3, 1, 0).numpy()

    def vector(parameter):
        return parameter.detach().double().numpy()

    first, second = (float(activation.bound.detach()) for activation in network.activations[:2])
    return FloatModel((
        Conv2d(conv_weight(network.conv1) / scale, vector(network.conv1.bias), 1, 1, relu=True,
               clip=first),
        Conv2d(conv_weight(network.conv2), vector(network.conv2.bias), 2, 1, relu=True,
               clip=second),
        GlobalAvgPool(),
        Dense(vector(network.linear.weight).T, vector(network.linear.bias))),
        input_shape=(8, 8, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "sw"
                        / "digits_cnn.npz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = digits_split()

    def images(x):
        return torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)

    x, y, x_test = images(data.x_train), torch.tensor(data.y_train), images(data.x_test)
    network = Network()
    generator = torch.Generator().manual_seed(args.seed)

    def train(epochs, rate):
        optimizer = torch.optim.Adam(network.parameters(), lr=rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=generator).split(32):
                optimizer.zero_grad()
                nn.functional.cross_entropy(network(x[batch]), y[batch]).backward()
                optimizer.step()
            schedule.step()

    def test_accuracy():
        with torch.no_grad():
            return accuracy(network(x_test).argmax(1).numpy(), data.y_test)

    started = time.perf_counter()
    train(60, 1e-2)
    trained = test_accuracy()
    network.quantize(True)
    train(60, 2e-3)
    fake_quantized = test_accuracy()
    network.quantize(False)
    seconds = time.perf_counter() - started
    model = to_float_model(network, 16.0)
    model.save(args.out)
    print(f"trained in {seconds:.0f} s; test accuracy: float {100 * trained:.1f} % before and "
          f"{100 * test_accuracy():.1f} % after W{BITS}/A{BITS} fine-tuning (fake-quantized "
          f"{100 * fake_quantized:.1f} %), FloatModel "
          f"{100 * accuracy(model.predict(data.x_test), data.y_test):.1f} %; wrote {args.out} "
          f"({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
