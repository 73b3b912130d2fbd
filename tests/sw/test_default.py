"""The embedded workloads (systolix.sw.default): quantized for an array, packed, run from the
memory images by the golden model as the engine would."""

import numpy as np
import pytest

from systolix.config import DEFAULT_CONFIG, code_range
from systolix.layer import IntegerLayer, MatMulLayer
from systolix.memory_map import MemoryConfig
from systolix.sim.golden import run_images, run_program
from systolix.sw.default import (WORKLOAD_CONFIGS, WORKLOAD_MEMORIES, WORKLOADS, default_program,
                                 workload_model)
from systolix.sw.models import accuracy
from systolix.sw.pack import pack
from systolix.sw.program import IntegerProgram
from systolix.sw.quant import QuantParams


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workload_runs_from_its_memory_images(workload):
    program, data, float_accuracy = default_program(DEFAULT_CONFIG, workload)
    assert program.inputs == 64 and program.outputs == 10
    images = pack(program, DEFAULT_CONFIG, WORKLOAD_MEMORIES[workload])
    codes = program.encode_input(data.x_test[:40])
    np.testing.assert_array_equal(run_images(images, DEFAULT_CONFIG, codes),
                                  run_program(program, codes))
    golden = accuracy(run_program(program, program.encode_input(data.x_test)).argmax(1),
                      data.y_test)
    assert golden >= float_accuracy - 0.03


def test_cnn_memories_hold_sixteen_images():
    program = default_program(DEFAULT_CONFIG, "digits-cnn")[0]
    assert pack(program, DEFAULT_CONFIG, WORKLOAD_MEMORIES["digits-cnn"]).max_batch == 16
    assert pack(program, DEFAULT_CONFIG, MemoryConfig()).max_batch == 2


def test_unknown_workload():
    with pytest.raises(ValueError, match=r"workload must be one of digits-mlp, digits-cnn, "
                                         r"not 'imagenet'"):
        workload_model("imagenet")


def _codes(bits, signed, zero_point=0):
    return QuantParams(bits, signed, 1.0, zero_point, *code_range(bits, signed))


def test_vit_program_packs_for_its_array():
    """The digits ViT's program for its array and memories: every product accumulates as the
    array does and never overflows it; each layer on the array packs alone; the whole program
    packs (16 images a run) and runs bit-exactly from its images."""
    config, memories = WORKLOAD_CONFIGS["digits-vit"], WORKLOAD_MEMORIES["digits-vit"]
    program, data, _ = default_program(config, "digits-vit")
    products = [layer for layer in program.layers
                if isinstance(layer, (IntegerLayer, MatMulLayer))]
    assert len(products) == 18
    assert {(layer.accumulator_bits, layer.overflow) for layer in products} == {(16, "wrap")}
    for layer in program.layers:
        if isinstance(layer, IntegerLayer):
            alone = IntegerProgram((layer,), _codes(layer.input_bits, layer.input_signed),
                                   _codes(layer.output_bits, layer.output_signed,
                                          layer.output_zero_point))
            pack(alone, config, memories)
    codes = program.encode_input(data.x_test[:8])
    images = pack(program, config, memories)
    assert images.max_batch == 16
    np.testing.assert_array_equal(run_images(images, config, codes), run_program(program, codes))
