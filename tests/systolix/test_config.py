import dataclasses

import pytest

from systolix.config import ArrayConfig, code_range


@pytest.mark.parametrize("field, value, message", [
    ("rows", 0, r"^rows must be an integer in 1\.\.32, not 0$"),
    ("cols", 33, r"^cols must be an integer in 1\.\.32, not 33$"),
    ("weight_bits", 9, r"^weight_bits must be an integer in 1\.\.8, not 9$"),
    ("activation_bits", 0, r"^activation_bits must be an integer in 1\.\.8, not 0$"),
    ("accumulator_bits", 1, r"^accumulator_bits must be an integer in 2\.\.32, not 1$"),
    ("accumulator_bits", 33, r"^accumulator_bits must be an integer in 2\.\.32, not 33$"),
    ("rows", 4.0, r"^rows must be an integer in 1\.\.32, not 4\.0$"),
    ("weight_bits", True, r"^weight_bits must be an integer in 1\.\.8, not True$"),
    ("overflow", "clip", r"^overflow must be one of 'wrap', 'saturate', not 'clip'$"),
    ("weight_signed", 1, r"^weight_signed must be True or False, not 1$"),
])
def test_invalid_parameters_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ArrayConfig(), **{field: value})


def test_ranges_follow_widths_and_signedness():
    config = ArrayConfig(weight_bits=1, weight_signed=True, activation_bits=8,
                         activation_signed=False, accumulator_bits=12)
    assert config.weight_range == (-1, 0)
    assert config.activation_range == (0, 255)
    assert config.accumulator_range == (-2048, 2047)
    assert code_range(4, True) == (-8, 7)


def test_config_is_frozen_and_named():
    config = ArrayConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rows = 4
    assert config.name == "8x8-W4s-A4u-P16-wrap"


@pytest.mark.parametrize("name", ["8x8-W4s-A4u-P12-wrap", "3x5-W2s-A3u-P6-saturate-dsp",
                                  "1x32-W8u-A1s-P32-wrap", "4x4-W4s-A4u-P16-wrap-serial",
                                  "4x4-W4s-A4u-P16-wrap-dsp4"])
def test_names_round_trip(name):
    assert ArrayConfig.from_name(name).name == name


def test_processing_element_field():
    assert ArrayConfig.from_name("8x8-W4s-A4u-P12-wrap").pe == "lut"
    assert ArrayConfig.from_name("8x8-W4s-A4u-P12-wrap-lut").name == "8x8-W4s-A4u-P12-wrap"
    config = ArrayConfig.from_name("8x8-W4s-A4u-P12-wrap-dsp")
    assert config.pe == "dsp" and config.product_bits == 8 and config.product_signed
    assert config.dsp_operand_bits == 13
    assert dataclasses.replace(config, weight_signed=False,
                               activation_signed=False).dsp_operand_bits == 12
    with pytest.raises(ValueError, match=r"^pe must be one of 'lut', 'dsp', 'dsp4', 'serial', "
                                         r"not 'bits'$"):
        ArrayConfig.from_name("8x8-W4s-A4u-P12-wrap-bits")
    with pytest.raises(ValueError, match=r"^config must be a name like 8x8-W4s-A4u-P16-wrap"):
        ArrayConfig.from_name("8x8-W4s-A4u-P12")


def test_bit_serial_cells_refuse_saturation():
    with pytest.raises(ValueError, match=r"^pe 'serial' needs overflow 'wrap' \(a bit-serial "
                                         r"sum is built plane by plane, so clamping after every "
                                         r"addition cannot be exact\), not 'saturate'$"):
        ArrayConfig.from_name("4x4-W4s-A4u-P8-saturate-serial")


def test_four_product_cells_fit_a_dsp_operand():
    """A ``"dsp4"`` operand: half a product apart, one bit saved where the sums wrap on one
    side only (W4s: the lowest sums; W4u/A4s: the highest); wider than a DSP's is refused."""
    config = ArrayConfig.from_name("8x8-W4s-A4u-P12-wrap-dsp4")
    assert (config.dsp4_spacing, config.dsp4_operand_bits, config.packed_operand_bits(3)) \
        == (4, 16, 12)
    assert ArrayConfig.from_name("8x8-W4u-A4s-P12-wrap").dsp4_operand_bits == 16
    assert ArrayConfig.from_name("8x8-W4u-A4u-P12-wrap").dsp4_operand_bits == 15
    assert ArrayConfig.from_name("8x8-W3s-A5u-P12-wrap-dsp4").dsp4_operand_bits == 15
    with pytest.raises(ValueError, match=r"^pe 'dsp4' needs a packed operand of at most 18 "
                                         r"bits \(a DSP multiplier's\), not 19 \(weight and "
                                         r"activation bits 4 and 5\); use pe 'dsp'$"):
        ArrayConfig.from_name("8x8-W4s-A5u-P16-wrap-dsp4")
    with pytest.raises(ValueError, match=r"^lanes must be an integer in 2\.\.4, not 5$"):
        config.packed_operand_bits(5)
