"""cocotb testbench of the integer nonlinear units (:mod:`systolix.hw.gelu`,
:mod:`systolix.hw.softmax`, :mod:`systolix.hw.layernorm`) on the Verilog Amaranth emits.

:class:`NonlinearUnits` puts the three units side by side in one design (one simulator build),
each port renamed ``{unit}_{port}``. The test drives each unit's input streams with random gaps
(honouring ``ready``), collects its output stream and compares every code with the golden
model's, which the spec (the JSON file named by ``SYSTOLIX_SPEC``, made by :func:`unit_cases`)
carries; the report (``SYSTOLIX_REPORT``) counts codes, mismatches and cycles per unit.
"""

import json
import logging
import os
import random

import cocotb
import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from systolix.hw.gelu import GeluUnit
from systolix.hw.layernorm import LayerNormUnit
from systolix.hw.softmax import SoftmaxUnit
from systolix.layer import LAYERNORM_BIAS_BITS, ROUNDING_MODES
from systolix.numeric import MULTIPLIER_BITS
from systolix.sim.golden.nonlinear import (gelu_constants, integer_gelu, integer_layernorm,
                                           integer_softmax)

__all__ = ["NonlinearUnits", "unit_cases"]

_CODE_BITS = 9                  # CODE_SHAPE: signed(9)


def _always_ready(member):
    return member.is_signature and getattr(member.signature, "always_ready", False)


class NonlinearUnits(wiring.Component):
    """A GELU, a softmax and a LayerNorm unit side by side (or those of ``units``); rows of up
    to ``max_length``. An always-ready stream becomes its ``__valid`` and ``__payload`` ports (a
    top-level port cannot be the constant ``ready``)."""

    def __init__(self, max_length, units=("gelu", "softmax", "layernorm")):
        makers = {"gelu": lambda: GeluUnit(unsigned(16)),
                  "softmax": lambda: SoftmaxUnit(max_length),
                  "layernorm": lambda: LayerNormUnit(max_length)}
        self.units = {name: makers[name]() for name in units}
        members = {}
        for prefix, unit in self.units.items():
            for name, member in unit.signature.members.items():
                if _always_ready(member):
                    shape = member.signature.members["payload"].shape
                    members[f"{prefix}_{name}__valid"] = member.flow(1)
                    members[f"{prefix}_{name}__payload"] = member.flow(shape)
                else:
                    members[f"{prefix}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for prefix, unit in self.units.items():
            m.submodules[prefix] = unit
            for name, member in unit.signature.members.items():
                inner = getattr(unit, name)
                if _always_ready(member):
                    pairs = [(getattr(self, f"{prefix}_{name}__{part}"), getattr(inner, part))
                             for part in ("valid", "payload")]
                    m.d.comb += [(port.eq(value) if member.flow == Out else value.eq(port))
                                 for port, value in pairs]
                elif member.is_signature:
                    wiring.connect(m, wiring.flipped(getattr(self, f"{prefix}_{name}")), inner)
                else:
                    m.d.comb += inner.eq(getattr(self, f"{prefix}_{name}"))
        return m


def unit_cases(seed=0):
    """The spec of the test: per unit, its constants, input codes and the golden outputs."""
    rng = np.random.default_rng(seed)
    clip, constant = gelu_constants(1 / 16)
    gelu_codes = np.arange(-128, 128)
    gelu = dict(input_zero_point=3, clip=clip, constant=constant, multiplier=40000, shift=21,
                zero_point=2, low=0, high=15, rounding=0)
    rows = rng.integers(-128, 128, size=(6, 17))
    softmax = dict(length=17, fraction_bits=3, multiplier=255, shift=30, zero_point=0, low=0,
                   high=255, rounding=1)
    channels = rng.integers(0, 256, size=(5, 16))
    multiplier = rng.integers(-256, 256, 16)
    bias = rng.integers(-(1 << 40), 1 << 40, 16)
    layernorm = dict(channels=16, shift=36, zero_point=0, low=-128, high=127, rounding=0)
    return {
        "gelu": {"constants": gelu, "codes": gelu_codes.tolist(), "expected": integer_gelu(
            gelu_codes, 3, clip, constant, 40000, 21, 2, 0, 15).tolist()},
        "softmax": {"constants": softmax, "codes": rows.ravel().tolist(),
                    "expected": integer_softmax(rows, 3, 255, 30, 0, 0, 255,
                                                ROUNDING_MODES[1]).ravel().tolist()},
        "layernorm": {"constants": layernorm, "codes": channels.ravel().tolist(),
                      "multiplier": multiplier.tolist(), "bias": bias.tolist(),
                      "expected": integer_layernorm(channels, multiplier, bias, 36, 0, -128,
                                                    127).ravel().tolist()},
    }


def _bits(value, width):
    return int(value) & ((1 << width) - 1)


def _signed(value, width):
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


async def _run_unit(dut, prefix, case, rng):
    """Drive one unit with the case's codes (and constants), return its report entry."""
    log = logging.getLogger(f"cocotb.tb.{prefix}")
    for name, value in case["constants"].items():
        getattr(dut, f"{prefix}_{name}").value = _bits(value, 64 if name == "bias" else 32) \
            & ((1 << len(getattr(dut, f"{prefix}_{name}"))) - 1)
    valid = getattr(dut, f"{prefix}_input__valid")
    payload = getattr(dut, f"{prefix}_input__payload")
    ready = getattr(dut, f"{prefix}_input__ready", None)
    out_valid = getattr(dut, f"{prefix}_output__valid")
    out_payload = getattr(dut, f"{prefix}_output__payload")
    codes, expected = case["codes"], case["expected"]
    constants = None
    if prefix == "layernorm":
        constants = (getattr(dut, f"{prefix}_constants__valid"),
                     getattr(dut, f"{prefix}_constants__ready"),
                     getattr(dut, f"{prefix}_constants__payload"))
        channels = case["constants"]["channels"]
    sent = taken = cycles = 0
    outputs = []
    while len(outputs) < len(expected):
        offer = sent < len(codes) and rng.random() < 0.7
        valid.value = int(offer)
        if offer:
            code = _bits(codes[sent], _CODE_BITS)
            payload.value = code | (sent << _CODE_BITS) if prefix == "gelu" else code
        if constants is not None:
            give = rng.random() < 0.7
            constants[0].value = int(give)
            index = taken % channels
            constants[2].value = _bits(case["multiplier"][index], MULTIPLIER_BITS + 1) | (
                _bits(case["bias"][index], LAYERNORM_BIAS_BITS) << (MULTIPLIER_BITS + 1))
        await ReadOnly()
        if offer and (ready is None or int(ready.value)):
            sent += 1
        if constants is not None and give and int(constants[1].value):
            taken += 1
        if int(out_valid.value):
            outputs.append(_signed(out_payload.value.to_unsigned(), _CODE_BITS))
        await RisingEdge(dut.clk)
        cycles += 1
        if cycles > 50 * len(expected) + 1000:
            break
    mismatches = sum(a != b for a, b in zip(outputs, expected)) + len(expected) - len(outputs)
    log.info("%d codes, %d mismatches, %d cycles", len(outputs), mismatches, cycles)
    return {"codes": len(outputs), "mismatches": mismatches, "cycles": cycles}


@cocotb.test()
async def nonlinear_units(dut):
    """Each unit's outputs against the golden model's, with random input gaps."""
    spec = json.loads(open(os.environ["SYSTOLIX_SPEC"]).read())
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for prefix in ("gelu", "softmax", "layernorm"):
        getattr(dut, f"{prefix}_input__valid").value = 0
    dut.layernorm_constants__valid.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    rng = random.Random(spec.get("seed", 0))
    report = {prefix: await _run_unit(dut, prefix, spec["cases"][prefix], rng)
              for prefix in ("gelu", "softmax", "layernorm")}
    with open(os.environ["SYSTOLIX_REPORT"], "w") as file:
        json.dump(report, file)
