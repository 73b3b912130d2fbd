"""The embedded workloads (systolix.sw.default): quantized for an array, packed, run from the
memory images by the golden model as the engine would."""

import numpy as np
import pytest

from systolix.config import DEFAULT_CONFIG
from systolix.memory_map import MemoryConfig
from systolix.sim.golden import run_images, run_program
from systolix.sw.default import WORKLOAD_MEMORIES, WORKLOADS, default_program, workload_model
from systolix.sw.models import accuracy
from systolix.sw.pack import pack


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
