"""The integer program: what the accelerator runs, with nothing but integers in its layers.

An :class:`IntegerProgram` is a graph of the layers of :mod:`systolix.layer` in execution
order: dense and convolution layers (:class:`IntegerLayer`, an integer GEMM on raw codes into a
``P``-bit accumulator followed by a per-channel fixed-point requantization), max pooling,
residual adds, and the layers of a transformer: products of two activations
(:class:`MatMulLayer`), softmax, LayerNorm and GELU. Each layer reads the outputs of earlier layers (``sources``), the last layer's
output is the program's. :mod:`systolix.sim.golden.program` executes it bit-exactly and defines
the exact arithmetic. The program also carries the two float quantizers of its interface to the
host (how to turn real inputs into input codes and output codes back into real values); the
layers never use them.
"""

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from systolix.config import code_range
from systolix.layer import (AddLayer, GeluLayer, IntegerLayer, LayerNormLayer, MatMulLayer,
                            MaxPoolLayer, SoftmaxLayer, Window)

from .io import exact_keys, field, layer_count, load_arrays, save_arrays
from .quant import QuantParams

__all__ = ["IntegerLayer", "MaxPoolLayer", "AddLayer", "MatMulLayer", "SoftmaxLayer",
           "LayerNormLayer", "GeluLayer", "Window", "IntegerProgram",
           "QUANTIZER_FIELDS", "check_quantizer", "chain_sources"]

_FORMAT = "systolix.IntegerProgram"
_VERSION = 2
_ARRAYS = ("weights", "bias", "multiplier", "shift")
_SCALAR_KINDS = {"output_zero_point": int, "output_low": int, "output_high": int,
                 "input_bits": int, "input_signed": bool, "weight_bits": int,
                 "weight_signed": bool, "output_bits": int, "output_signed": bool,
                 "accumulator_bits": int, "overflow": str, "rounding": str}
_ADD_KINDS = {"shape": list, "zero_points": list, "multipliers": list, "shift": int,
              "output_zero_point": int, "output_low": int, "output_high": int,
              "input_bits": int, "input_signed": bool, "output_bits": int,
              "output_signed": bool, "rounding": str}
_WINDOW_FIELDS = tuple(item.name for item in fields(Window))
_KINDS = {IntegerLayer: "integer", MaxPoolLayer: "maxpool", AddLayer: "add",
          MatMulLayer: "matmul", SoftmaxLayer: "softmax", LayerNormLayer: "layernorm",
          GeluLayer: "gelu"}
# The layers of a transformer are stored field by field: their annotations say each field's
# JSON kind (a numpy array is an array of the file, ``{name}{index}``).
_GENERIC = {kind: {item.name: item.type for item in fields(kind)}
            for kind in (MatMulLayer, SoftmaxLayer, LayerNormLayer, GeluLayer)}
_JSON_KINDS = {int: int, bool: bool, str: str, tuple: list}
QUANTIZER_FIELDS = tuple(item.name for item in fields(QuantParams))


def chain_sources(count):
    """The sources of ``count`` chained layers: each reads the one before, the first the
    program's input (-1)."""
    return tuple((index - 1,) for index in range(count))


def check_quantizer(name, params):
    """Raise :class:`ValueError` unless ``params`` is a per-tensor :class:`QuantParams` with a
    finite positive scale, ``bits`` 1..8 and its zero point and bounds among its codes."""
    if not isinstance(params, QuantParams):
        raise ValueError(f"{name} must be a QuantParams, not {type(params).__name__}")
    bits, signed = params.bits, params.signed
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"{name}.bits must be an integer in 1..8, not {bits!r}")
    if not isinstance(signed, (bool, np.bool_)):
        raise ValueError(f"{name}.signed must be True or False, not {signed!r}")
    scale = params.scale
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer,
                                                                     np.floating)) \
            or not math.isfinite(scale) or not scale > 0:
        raise ValueError(f"{name}.scale must be a finite number above 0, not {scale!r}")
    low, high = code_range(int(bits), bool(signed))
    for part in ("zero_point", "low", "high"):
        value = getattr(params, part)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or not low <= value <= high:
            raise ValueError(f"{name}.{part} must be an integer in {low}..{high} (the "
                             f"{bits}-bit {'signed' if signed else 'unsigned'} codes), not "
                             f"{value!r}")
    if params.low > params.high:
        raise ValueError(f"{name}.high must be an integer in {params.low}..{high}, not "
                         f"{params.high!r}")


@dataclass(frozen=True)
class IntegerProgram:
    """A graph of integer layers and the quantizers of its interface to the host.

    Parameters
    ----------
    layers : tuple
        :class:`IntegerLayer`, :class:`MaxPoolLayer` and :class:`AddLayer` records in execution
        order; the last one's output is the program's.
    input : QuantParams
        How real inputs become the input codes (:meth:`encode_input`).
    output : QuantParams
        How the last layer's output codes become real values (:meth:`decode_output`).
    sources : tuple of tuple of int, optional
        ``sources[l]``: the layers whose outputs layer ``l`` reads, each earlier than ``l``, or
        -1 for the program's input; two for an add layer and a matmul layer (operands ``a``,
        ``b``), one for the others. By default each
        layer reads the one before (:func:`chain_sources`).
    """

    layers: tuple
    input: QuantParams
    output: QuantParams
    sources: tuple = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("an integer program needs at least one layer")
        for index, layer in enumerate(self.layers):
            if type(layer) not in _KINDS:
                raise ValueError(f"layer {index} must be an IntegerLayer, MaxPoolLayer, "
                                 f"AddLayer, MatMulLayer, SoftmaxLayer, LayerNormLayer or "
                                 f"GeluLayer, not {type(layer).__name__}")
        sources = chain_sources(len(self.layers)) if self.sources is None else self.sources
        if not isinstance(sources, (tuple, list)) or len(sources) != len(self.layers):
            raise ValueError(f"sources must list the inputs of each of the {len(self.layers)} "
                             f"layers")
        sources = tuple(tuple(entry) for entry in sources)
        object.__setattr__(self, "sources", sources)
        check_quantizer("input", self.input)
        check_quantizer("output", self.output)
        first_inputs = {layer.inputs for layer, entry in zip(self.layers, sources)
                        if -1 in entry}
        for index, (layer, entry) in enumerate(zip(self.layers, sources)):
            wanted = 2 if isinstance(layer, (AddLayer, MatMulLayer)) else 1
            lengths = getattr(layer, "operand_inputs", (layer.inputs,) * wanted)
            if len(entry) != wanted or any(isinstance(source, bool) or
                                           not isinstance(source, int) or
                                           not -1 <= source < index for source in entry):
                raise ValueError(f"sources[{index}] must list {wanted} earlier layer(s) "
                                 f"(-1..{index - 1}), not {list(entry)}")
            for source, wanted_length in zip(entry, lengths):
                if source == -1:
                    producer, bits, signed, length = "the input", self.input.bits, \
                        self.input.signed, None
                else:
                    made = self.layers[source]
                    producer, bits, signed, length = f"layer {source}", made.output_bits, \
                        made.output_signed, made.outputs
                if length is not None and length != wanted_length:
                    raise ValueError(f"layer {index} has {wanted_length} inputs but {producer} "
                                     f"has {length} outputs")
                if (bits, signed) != (layer.input_bits, layer.input_signed):
                    raise ValueError(f"the output codes of {producer} must be the input codes "
                                     f"of layer {index}")
        if len(first_inputs) > 1:
            raise ValueError(f"the layers that read the input must agree on its length, not "
                             f"{sorted(first_inputs)}")
        last = self.layers[-1]
        zero_point = _zero_point(last)
        if (self.output.bits, self.output.signed) != (last.output_bits, last.output_signed) \
                or zero_point not in (None, self.output.zero_point):
            raise ValueError(f"the output quantizer (bits {self.output.bits}, signed "
                             f"{self.output.signed}, zero point {self.output.zero_point}) must "
                             f"read the last layer's output codes (bits {last.output_bits}, "
                             f"signed {last.output_signed}, zero point {zero_point})")

    @property
    def inputs(self):
        """Codes of one input vector."""
        return next(layer.inputs for layer, entry in zip(self.layers, self.sources)
                    if -1 in entry)

    @property
    def outputs(self):
        """Codes of one output vector."""
        return self.layers[-1].outputs

    def encode_input(self, x):
        """Input codes for real inputs ``x`` of shape ``(n, inputs)``."""
        return self.input.quantize(x)

    def decode_output(self, codes):
        """Real values of output codes."""
        return self.output.dequantize(codes)

    def save(self, path):
        """Write the program to one ``.npz`` file (atomically, with a format version)."""
        entries, arrays = [], {}
        for index, (layer, entry) in enumerate(zip(self.layers, self.sources)):
            record = {"kind": _KINDS[type(layer)], "sources": list(entry)}
            if isinstance(layer, IntegerLayer):
                record.update({name: getattr(layer, name) for name in _SCALAR_KINDS})
                record["window"] = None if layer.window is None else asdict(layer.window)
                arrays.update({f"{name}{index}": getattr(layer, name) for name in _ARRAYS})
            elif isinstance(layer, MaxPoolLayer):
                record.update(window=asdict(layer.window), bits=layer.bits,
                              signed=layer.signed)
            elif type(layer) in _GENERIC:
                for name, kind in _GENERIC[type(layer)].items():
                    value = getattr(layer, name)
                    if kind is np.ndarray:
                        arrays[f"{name}{index}"] = value
                    else:
                        record[name] = list(value) if kind is tuple else value
            else:
                record.update({name: (list(getattr(layer, name))
                                      if kind is list else getattr(layer, name))
                               for name, kind in _ADD_KINDS.items()})
            entries.append(record)
        header = {"input": asdict(self.input), "output": asdict(self.output),
                  "layers": entries}
        save_arrays(path, _FORMAT, _VERSION, header, arrays)

    @classmethod
    def load(cls, path):
        """Read a program written by :meth:`save`.

        Raises
        ------
        ValueError
            Naming the file, the header field or array, the value and what is allowed: for a
            missing, empty, truncated or unreadable file, another format or version (version
            1, the chain of dense layers, is refused: quantize or import the model again), a
            header field missing, unknown or of the wrong type, an array missing, unknown, not
            of integers or of another shape, a quantizer whose scale is not finite and
            positive, codes out of range, layers that do not connect.
        """
        def members(header):
            layer_count(path, header)
            names = {"integer": _ARRAYS, **{
                _KINDS[kind]: [name for name, annotation in specs.items()
                               if annotation is np.ndarray]
                for kind, specs in _GENERIC.items()}}
            return {f"{name}{index}": ("int", 2 if name == "weights" else 1)
                    for index, entry in enumerate(header["layers"]) if isinstance(entry, dict)
                    for name in names.get(entry.get("kind"), ())}

        header, arrays = load_arrays(path, _FORMAT, _VERSION, members)
        exact_keys(path, "", header, ("format", "version", "input", "output", "layers"))
        layers, sources = [], []
        for index, entry in enumerate(header["layers"]):
            where = f"layers[{index}]."
            kind = field(path, where, entry, "kind", str)
            if kind not in _KINDS.values():
                raise ValueError(f"{path}: header field {where}kind: must be one of "
                                 f"{', '.join(_KINDS.values())}, not {kind!r}")
            sources.append(tuple(field(path, where, entry, "sources", list)))
            layer, values = _layer_fields(path, where, kind, entry, arrays, index)
            try:
                layers.append(layer(**values))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}: layer {index}: {error}") from None
        quantizers = {}
        for name in ("input", "output"):
            entry = header[name]
            exact_keys(path, f"{name}.", entry, QUANTIZER_FIELDS)
            for part, kind in (("bits", int), ("signed", bool), ("zero_point", int),
                               ("low", int), ("high", int)):
                field(path, f"{name}.", entry, part, kind)
            field(path, f"{name}.", entry, "scale", float, low=0)
            quantizers[name] = QuantParams(**entry)
        try:
            return cls(tuple(layers), quantizers["input"], quantizers["output"], tuple(sources))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def _zero_point(layer):
    """The zero point of a layer's output codes (max pooling keeps its input's, unknown to the
    layer: the output quantizer's is then taken as given)."""
    return getattr(layer, "output_zero_point", None)


def _window(path, where, entry):
    value = field(path, where, entry, "window", dict)
    exact_keys(path, f"{where}window.", value, _WINDOW_FIELDS)
    for name in _WINDOW_FIELDS:
        field(path, f"{where}window.", value, name, int)
    try:
        return Window(**value)
    except ValueError as error:
        raise ValueError(f"{path}: header field {where}window: {error}") from None


def _layer_fields(path, where, kind, entry, arrays, index):
    """The class of layer ``index`` and its checked fields (header fields and arrays): the
    header's own errors name the file and the field; the layer's checks of the values come
    when the caller builds it."""
    if kind == "integer":
        exact_keys(path, where, entry, ("kind", "sources", "window", *_SCALAR_KINDS))
        for name, scalar in _SCALAR_KINDS.items():
            field(path, where, entry, name, scalar)
        window = None if entry["window"] is None else _window(path, where, entry)
        return IntegerLayer, {**{name: arrays[f"{name}{index}"] for name in _ARRAYS},
                              **{name: entry[name] for name in _SCALAR_KINDS}, "window": window}
    generic = {_KINDS[layer]: layer for layer in _GENERIC}
    if kind in generic:
        specs = _GENERIC[generic[kind]]
        scalars = {name: _JSON_KINDS[annotation] for name, annotation in specs.items()
                   if annotation is not np.ndarray}
        exact_keys(path, where, entry, ("kind", "sources", *scalars))
        values = {name: field(path, where, entry, name, scalar)
                  for name, scalar in scalars.items()}
        values = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in values.items()}
        values.update({name: arrays[f"{name}{index}"] for name in specs
                       if name not in scalars})
        return generic[kind], values
    if kind == "maxpool":
        exact_keys(path, where, entry, ("kind", "sources", "window", "bits", "signed"))
        return MaxPoolLayer, {"window": _window(path, where, entry),
                              "bits": field(path, where, entry, "bits", int),
                              "signed": field(path, where, entry, "signed", bool)}
    exact_keys(path, where, entry, ("kind", "sources", *_ADD_KINDS))
    for name, scalar in _ADD_KINDS.items():
        field(path, where, entry, name, scalar)
    return AddLayer, {name: tuple(entry[name]) if scalar is list else entry[name]
                      for name, scalar in _ADD_KINDS.items()}
