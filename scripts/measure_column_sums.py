"""Measure a denser alternative to the systolic array's LUT cells on the iCE40UP5K: the
datapath of an 8x8 array whose columns sum their products in an adder tree, by activation
bit-plane, with each row's activation broadcast to its cells (no input skew). The figures of
docs/boards.md ("What stands in the way of 64 MACs a cycle at 40 MHz") come from it.

    python scripts/measure_column_sums.py [--build build/column-sums]

It checks the datapath against numpy in Amaranth's simulator, then synthesizes, places and
routes it out of context as :func:`systolix.boards.synth.synthesize` does (seed 1, placed for
48 MHz, ``synth_ice40 -dsp -dff`` as the iCEBreaker's build), with and without shadow weights,
next to :class:`~systolix.hw.array.SystolicArray` of the same configuration. The datapath has
no stream control, weight loader or result memory, which the systolic array's figure includes
(about 150 to 300 logic cells of it): a lower bound of what such an array would cost. About two
minutes on one core.
"""

import argparse
from pathlib import Path

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from systolix.boards.tops import UP5K_SYNTH
from systolix.boards.synth import synthesize
from systolix.config import DEFAULT_CONFIG
from systolix.hw.array import SystolicArray
from systolix.hw.mac import activation_shape, weight_shape


class ColumnSums(wiring.Component):
    """``sums = activations @ W`` for unsigned activations: each column adds the weights of the
    rows whose activation has bit ``b`` set, two rows a logic cell's conditional add, in a tree
    registered at every level, one tree a bit-plane, then the planes shifted into place.

    ``weights[r]`` is written into row ``r``'s shadow registers when ``weight_write[r]``
    (straight into the active ones without ``shadow``); ``swap`` makes the shadow tile active.
    Throughput one vector a cycle; latency :attr:`latency` cycles from ``activations`` to
    ``sums``.
    """

    def __init__(self, config, *, shadow=True):
        assert not config.activation_signed and config.rows % 2 == 0
        self.config, self.shadow = config, shadow
        self.sum_shape = signed(config.weight_bits + config.activation_bits
                                + (config.rows - 1).bit_length())
        # The activations' register, the pairs' and one a level of the two binary trees.
        self.latency = (2 + (config.rows // 2 - 1).bit_length()
                        + (config.activation_bits - 1).bit_length())
        super().__init__({
            "activations": In(data.ArrayLayout(activation_shape(config), config.rows)),
            "weights": In(data.ArrayLayout(weight_shape(config), config.cols)),
            "weight_write": In(config.rows),
            "swap": In(1),
            "sums": Out(data.ArrayLayout(self.sum_shape, config.cols)),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.config.rows, self.config.cols
        weight = {}

        def register(value, name):
            stored = Signal(Value.cast(value).shape(), name=name)
            m.d.sync += stored.eq(value)
            return stored

        def tree(values, name):
            level = 0
            while len(values) > 1:
                level += 1
                values = [register(sum(values[i:i + 2]), f"{name}_{level}_{i // 2}")
                          for i in range(0, len(values), 2)]
            return values[0]

        activations = [register(self.activations[r], f"activation_{r}") for r in range(rows)]
        for r in range(rows):
            for c in range(cols):
                active = Signal(weight_shape(self.config), name=f"weight_{r}_{c}")
                loaded = active
                if self.shadow:
                    loaded = Signal(weight_shape(self.config), name=f"shadow_{r}_{c}")
                    with m.If(self.swap):
                        m.d.sync += active.eq(loaded)
                with m.If(self.weight_write[r]):
                    m.d.sync += loaded.eq(self.weights[c])
                weight[r, c] = active
        for c in range(cols):
            planes = []
            for b in range(self.config.activation_bits):
                pairs = []
                for r in range(0, rows, 2):
                    first = Mux(activations[r][b], weight[r, c], 0)
                    pairs.append(register(Mux(activations[r + 1][b], first + weight[r + 1, c],
                                              first), f"pair_{c}_{b}_{r // 2}"))
                plane = tree(pairs, f"plane_{c}_{b}")
                planes.append(plane << b)
            total = tree(planes, f"column_{c}")
            m.d.comb += self.sums[c].eq(total)
        return m


def check(datapath, vectors=64, seed=1):
    """Simulate ``datapath`` on random weights and activations (and the extremes) against
    numpy; raise if a sum differs."""
    config = datapath.config
    rng = np.random.default_rng(seed)
    low, high = -2 ** (config.weight_bits - 1), 2 ** (config.weight_bits - 1) - 1
    weights = rng.integers(low, high, size=(config.rows, config.cols), endpoint=True)
    weights[:, 0] = low
    codes = rng.integers(0, 2 ** config.activation_bits - 1, size=(vectors, config.rows),
                         endpoint=True)
    codes[0] = 2 ** config.activation_bits - 1
    expected = codes @ weights
    got = []

    async def bench(ctx):
        for r in range(config.rows):
            ctx.set(datapath.weights, [int(w) for w in weights[r]])
            ctx.set(datapath.weight_write, 1 << r)
            await ctx.tick()
        ctx.set(datapath.weight_write, 0)
        ctx.set(datapath.swap, 1)
        await ctx.tick()
        ctx.set(datapath.swap, 0)
        for cycle in range(vectors + datapath.latency):
            if cycle < vectors:
                ctx.set(datapath.activations, [int(a) for a in codes[cycle]])
            await ctx.tick()
            if cycle + 1 >= datapath.latency:
                got.append([ctx.get(datapath.sums[c]) for c in range(config.cols)])

    simulator = Simulator(datapath)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    if not np.array_equal(np.array(got[:vectors]), expected):
        raise AssertionError("the column sums differ from numpy's")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=Path("build/column-sums"))
    args = parser.parse_args()
    config = DEFAULT_CONFIG
    check(ColumnSums(config))
    print(f"{config.name}: column sums by bit-plane equal numpy's")
    designs = [("column sums, shadow weights", ColumnSums(config)),
               ("column sums, no shadow weights", ColumnSums(config, shadow=False)),
               ("systolic array (LUT cells)", SystolicArray(config))]
    print(f"{'design':<34}{'LCs':>6}{'LUT4':>6}{'FF':>6}{'carry':>7}{'BRAM':>6}"
          f"{'fmax MHz':>10}{'LCs/MAC':>9}")
    for index, (name, design) in enumerate(designs):
        result = synthesize(design, seed=1, target_mhz=48.0, name=f"design{index}",
                            build_dir=args.build / f"design{index}", synth_options=UP5K_SYNTH)
        print(f"{name:<34}{result.logic_cells:>6}{result.luts:>6}{result.flip_flops:>6}"
              f"{result.carries:>7}{result.brams:>6}{result.fmax_mhz:>10.1f}"
              f"{result.logic_cells / (config.rows * config.cols):>9.1f}")


if __name__ == "__main__":
    main()
