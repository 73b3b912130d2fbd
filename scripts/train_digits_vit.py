"""Train the digits vision transformer once and write its float weights (``sw/digits_vit.npz``).

    pip install -e '.[torch]'
    python scripts/train_digits_vit.py [--out sw/digits_vit.npz] [--seed 0]

The network (:class:`systolix.sw.models.VisionTransformer`, :func:`systolix.sw.models.digits_vit`):
16 patches of 2x2 pixels, width 32, 2 heads, 2 pre-LayerNorm encoder blocks (MLP 64 wide, exact
GELU), mean pooling, a linear head, on the 8x8 digits of :func:`systolix.sw.models.digits_split`
(training split only), on raw pixel values 0..16 (the patch embedding starts 16 times smaller).

Training: float, AdamW, cosine schedule, images shifted by up to one pixel; then
quantization-aware fine-tuning at W4/A4 with the quantizers of :mod:`systolix.sw.vit` (every
operand of every matrix product fake-quantized: weights per output channel, activations with
the ranges :func:`systolix.sw.vit.calibrate` finds on the float model, recalibrated at the start
of every epoch; straight-through rounding), and with what else the integer-only program of
:func:`systolix.sw.vit.lower_vit` changes: the tensors no product reads in 8-bit codes
(:func:`systolix.sw.vit.calibrate_wide`) and the integer GELU's approximation of ``erf`` in
place of the exact one (as I-ViT fine-tunes with its integer approximations), so that the float
weights keep their accuracy when the compiler quantizes them. One thread and a fixed seed, but
not bit-for-bit reproducible here: two runs of the same float phase reached 97.8 % and 97.2 %.
About 10 minutes on one busy core. Prints the test accuracy of the float and the
fake-quantized module and of the written model.
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from systolix.sim.golden.nonlinear import GELU_A, GELU_B
from systolix.sw.models import VisionTransformer, accuracy, digits_split
from systolix.sw.vit import calibrate, calibrate_wide, weight_quantizer

WIDTH, HEADS, DEPTH, HIDDEN, PATCH, SIDE, CLASSES = 32, 2, 2, 64, 2, 8, 10
BITS = 4
LOG2E = math.log2(math.e)


def straight_through(x, rounded):
    """``rounded`` forward, the identity backward."""
    return x + (rounded - x).detach()


def fake_quantize(x, params):
    """``params`` (a :class:`systolix.sw.quant.QuantParams`, per tensor) applied to ``x`` with
    straight-through rounding."""
    scale = float(params.scale)
    codes = torch.clamp(torch.floor(x / scale + 0.5) + params.zero_point, params.low, params.high)
    return straight_through(x, (codes - params.zero_point) * scale)


def integer_gelu(x):
    """The GELU of the integer unit (:func:`systolix.sim.golden.nonlinear.integer_gelu`) in
    float: I-BERT's clipped quadratic for ``erf``."""
    y = x / math.sqrt(2)
    t = torch.clamp(y.abs(), max=GELU_B) - GELU_B
    return x / 2 * (1 + torch.sign(y) * (1 - GELU_A * t * t))


def fake_quantize_weight(weight):
    """Per-output-channel (last axis) symmetric weights, as :func:`systolix.sw.vit.weight_quantizer`
    quantizes them (scales from the detached weights)."""
    params = weight_quantizer(weight.detach().double().numpy(), BITS)
    scale = torch.tensor(np.asarray(params.scale), dtype=weight.dtype)
    codes = torch.clamp(torch.floor(weight / scale + 0.5), params.low, params.high)
    return straight_through(weight, codes * scale)


class Network(nn.Module):
    def __init__(self):
        super().__init__()
        tokens = (SIDE // PATCH) ** 2
        shapes = VisionTransformer.shapes(tokens, PATCH, WIDTH, DEPTH, HIDDEN, CLASSES)
        self.params = nn.ParameterDict()
        for name, shape in shapes.items():
            if name.endswith(("norm1_weight", "norm2_weight", "norm_weight")):
                value = torch.ones(shape)
            elif name.endswith("_bias"):
                value = torch.zeros(shape)
            elif name == "position":
                value = 0.02 * torch.randn(shape)
            else:
                value = torch.randn(shape) / math.sqrt(shape[0]) / (16 if name == "embed_weight"
                                                                    else 1)
            self.params[name] = nn.Parameter(value)
        self.quantizers = None          # {name: QuantParams} when fake-quantizing
        self.wide = None                # the same for the tensors no product reads

    def weight(self, name):
        weight = self.params[name]
        return weight if self.quantizers is None else fake_quantize_weight(weight)

    def forward(self, patches, hook=None):
        """The logits of ``patches`` (n, tokens, 4); ``hook(name, value)`` sees every operand of
        an activation matmul (the names of :meth:`VisionTransformer.forward`)."""
        p = self.params

        def operand(name, value):
            if hook is not None:
                hook(name, value)
            if self.quantizers is None:
                return value
            return fake_quantize(value, self.quantizers[name])

        def seen(name, value):
            if self.wide is None:
                return value
            if name.endswith("scores"):
                return fake_quantize(value * LOG2E, self.wide[name]) / LOG2E
            return fake_quantize(value, self.wide[name])

        def norm(name, value):
            return nn.functional.layer_norm(value, (WIDTH,), p[f"{name}_weight"],
                                            p[f"{name}_bias"], VisionTransformer.LAYERNORM_EPS)

        h = seen("embed", operand("input", patches) @ self.weight("embed_weight")
                 + p["embed_bias"] + p["position"])
        n, tokens, _ = h.shape
        split = (n, tokens, HEADS, WIDTH // HEADS)
        for block in range(DEPTH):
            b = f"block{block}_"
            y = operand(b + "norm1", norm(b + "norm1", h))
            q, k, v = (operand(b + name, y @ self.weight(f"{b}{name}_weight")
                               + p[f"{b}{name}_bias"]).reshape(split)
                       for name in ("query", "key", "value"))
            scores = seen(b + "scores", torch.einsum("nihd,njhd->nhij", q, k)
                          / math.sqrt(split[3]))
            attention = operand(b + "attention", torch.softmax(scores, dim=-1))
            context = torch.einsum("nhij,njhd->nihd", attention, v).reshape(n, tokens, WIDTH)
            out = seen(b + "out", operand(b + "context", context)
                       @ self.weight(f"{b}out_weight") + p[f"{b}out_bias"])
            h = seen(b + "residual1", h + out)
            y = operand(b + "norm2", norm(b + "norm2", h))
            gelu = nn.functional.gelu if self.quantizers is None else integer_gelu
            u = seen(b + "fc1", y @ self.weight(f"{b}fc1_weight") + p[f"{b}fc1_bias"])
            u = seen(b + "fc2", operand(b + "gelu", gelu(u)) @ self.weight(f"{b}fc2_weight")
                     + p[f"{b}fc2_bias"])
            h = seen(b + "residual2", h + u)
        y = operand("norm", norm("norm", h))
        return seen("logits", y.mean(dim=1) @ self.weight("head_weight") + p["head_bias"])


def to_model(network):
    """The :class:`VisionTransformer` of the network."""
    return VisionTransformer({name: value.detach().double().numpy()
                              for name, value in network.params.items()}, HEADS, PATCH, SIDE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "sw"
                        / "digits_vit.npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--qat-epochs", type=int, default=60)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = digits_split()
    reference = to_model(Network())           # its patches() cuts images into tokens

    def patches(images):
        return torch.tensor(reference.patches(images), dtype=torch.float32)

    images = torch.tensor(data.x_train, dtype=torch.float32).reshape(-1, SIDE, SIDE)
    y, x_test = torch.tensor(data.y_train), patches(data.x_test)
    network = Network()
    generator = torch.Generator().manual_seed(args.seed)

    def shifted(batch):
        """Images shifted by -1..1 pixels each way (zeros shifted in), as patches."""
        padded = nn.functional.pad(images[batch], (1, 1, 1, 1))
        dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
        moved = padded[:, dy:dy + SIDE, dx:dx + SIDE].reshape(len(batch), -1)
        return torch.tensor(reference.patches(moved.numpy()), dtype=torch.float32)

    def train(epochs, rate, quantizing=False):
        optimizer = torch.optim.AdamW(network.parameters(), lr=rate, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
        for _ in range(epochs):
            if quantizing:
                model = to_model(network)
                network.quantizers = calibrate(model, data.x_train, BITS)
                network.wide = calibrate_wide(model, data.x_train, BITS,
                                              network.quantizers)
            for batch in torch.randperm(len(images), generator=generator).split(64):
                optimizer.zero_grad()
                nn.functional.cross_entropy(network(shifted(batch)), y[batch]).backward()
                optimizer.step()
            schedule.step()

    def test_accuracy():
        with torch.no_grad():
            return accuracy(network(x_test).argmax(1).numpy(), data.y_test)

    started = time.perf_counter()
    train(args.epochs, 3e-3)
    trained = test_accuracy()
    fake_quantized = None
    if args.qat_epochs:
        train(args.qat_epochs, 5e-4, quantizing=True)
        fake_quantized = test_accuracy()
        network.quantizers = network.wide = None
    seconds = time.perf_counter() - started
    model = to_model(network)
    model.save(args.out)
    print(f"trained in {seconds:.0f} s; test accuracy: float {100 * trained:.1f} % before and "
          f"{100 * test_accuracy():.1f} % after W{BITS}/A{BITS} fine-tuning (fake-quantized "
          f"{'-' if fake_quantized is None else f'{100 * fake_quantized:.1f}'} %), "
          f"VisionTransformer {100 * accuracy(model.predict(data.x_test), data.y_test):.1f} %; "
          f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
