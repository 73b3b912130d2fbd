"""Quantized ONNX models for the importer's tests, written with ``onnx.helper`` in both styles:
``"qonnx"`` (float operators between QONNX ``Quant`` nodes) and ``"qcdq"`` (QuantizeLinear /
Clip / DequantizeLinear). Scales are powers of two unless a test asks otherwise, so the float
execution of onnxruntime is exact and the comparison is code for code.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX_DOMAIN = "qonnx.custom_op.general"


class Net:
    """A model built layer by layer; ``self.x`` is the current (float, dequantized) tensor and
    ``self.q`` its quantizer ``(scale, zero_point, bits, signed)``."""

    def __init__(self, style, shape, bits=4, signed=False, scale=2.0 ** -3, zero_point=0,
                 seed=0, qonnx_opset=1):
        self.style, self.rng = style, np.random.default_rng(seed)
        self.qonnx_opset = qonnx_opset
        self.nodes, self.inits, self.count = [], [], 0
        self.shape = tuple(shape)
        self.input = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
        self.x = "x"
        self.q = None
        self.quantize(scale, zero_point, bits, signed)
        self.input_q = self.q
        self.now = list(shape)

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value, prefix="c"):
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, domain="", **attributes):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain,
                                           **attributes))
        return out

    def quantize(self, scale, zero_point, bits, signed, narrow=False):
        """Quantize the current tensor."""
        low = -(1 << (bits - 1)) + int(narrow) if signed else 0
        high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        if self.style == "qonnx":
            self.x = self.node("Quant", [self.x, self.const(np.float32(scale)),
                                         self.const(np.float32(zero_point)),
                                         self.const(np.float32(bits))], domain=QONNX_DOMAIN,
                               signed=int(signed), narrow=int(narrow), rounding_mode="ROUND")
        else:
            dtype = np.int8 if signed else np.uint8
            codes = self.node("QuantizeLinear", [self.x, self.const(np.float32(scale)),
                                                 self.const(dtype(zero_point))])
            if bits < 8 or narrow:
                codes = self.node("Clip", [codes, self.const(dtype(low)),
                                           self.const(dtype(high))])
            self.x = self.node("DequantizeLinear", [codes, self.const(np.float32(scale)),
                                                    self.const(dtype(zero_point))])
        self.q = (scale, zero_point, bits, signed, low, high)

    def weights(self, shape, bits, axis, scales=None, float_qcdq=False):
        """A weight tensor of random ``bits``-bit signed codes (narrow range) with a
        power-of-two scale per output channel (``axis``); returns its (float) name and the
        codes and scales."""
        high = (1 << (bits - 1)) - 1
        codes = self.rng.integers(-high, high, size=shape, endpoint=True)
        channels = shape[axis]
        if scales is None:
            scales = 2.0 ** -self.rng.integers(2, 6, size=channels)
        view = [1] * len(shape)
        view[axis] = -1
        full = (codes * scales.reshape(view)).astype(np.float32)
        if self.style == "qonnx":
            name = self.node("Quant", [self.const(full, "w"),
                                       self.const(scales.reshape(view).astype(np.float32)),
                                       self.const(np.float32(0)), self.const(np.float32(bits))],
                             domain=QONNX_DOMAIN, signed=1, narrow=1, rounding_mode="ROUND")
        elif float_qcdq:
            q = self.node("QuantizeLinear", [self.const(full, "w"),
                                             self.const(scales.astype(np.float32)),
                                             self.const(np.zeros(channels, np.int8))], axis=axis)
            q = self.node("Clip", [q, self.const(np.int8(-high)), self.const(np.int8(high))])
            name = self.node("DequantizeLinear", [q, self.const(scales.astype(np.float32)),
                                                  self.const(np.zeros(channels, np.int8))],
                             axis=axis)
        else:
            name = self.node("DequantizeLinear", [self.const(codes.astype(np.int8), "w"),
                                                  self.const(scales.astype(np.float32)),
                                                  self.const(np.zeros(channels, np.int8))],
                             axis=axis)
        return name, codes, scales

    def bias(self, weight_scales, conv):
        """A random bias quantized at the accumulator scale; its (float) name."""
        scales = self.q[0] * weight_scales
        codes = self.rng.integers(-40, 40, size=len(scales), endpoint=True)
        if self.style == "qonnx":
            value = (codes * scales).astype(np.float32)
            return self.const(value.reshape(-1, 1, 1) if conv else value, "b")
        name = self.node("DequantizeLinear", [self.const(codes.astype(np.int32), "b"),
                                              self.const(scales.astype(np.float32)),
                                              self.const(np.zeros(len(scales), np.int32))],
                         axis=0)
        return name

    def activation(self, relu, out):
        """``relu``: False, True (Relu) or a pair of real bounds (Clip)."""
        if relu is True:
            self.x = self.node("Relu", [self.x])
        elif relu:
            self.x = self.node("Clip", [self.x, self.const(np.float32(relu[0])),
                                        self.const(np.float32(relu[1]))])
        self.quantize(*out)

    def conv(self, channels, kernel, stride=1, pad=0, groups=1, bits=4, relu=True,
             out=(2.0 ** -2, 0, 4, False), bias=True, float_qcdq=False):
        inputs = self.current_channels()
        w, _, scales = self.weights((channels, inputs // groups, kernel, kernel), bits, 0,
                                    float_qcdq=float_qcdq)
        args = [self.x, w]
        if bias and self.style == "qcdq":
            args.append(self.bias(scales, True))
        self.window(channels, kernel, stride, pad)
        self.x = self.node("Conv", args, kernel_shape=[kernel, kernel], strides=[stride] * 2,
                           pads=[pad] * 4, group=groups)
        if bias and self.style == "qonnx":
            self.x = self.node("Add", [self.x, self.bias(scales, True)])
        self.activation(relu, out)

    def dense(self, outputs, bits=4, relu=True, out=(2.0 ** -2, 0, 4, False), gemm=False):
        features = self.current_features()
        if gemm:
            w, _, scales = self.weights((outputs, features), bits, 0)
            self.x = self.node("Gemm", [self.x, w, self.bias(scales, False)], transB=1)
        else:
            w, _, scales = self.weights((features, outputs), bits, 1)
            self.x = self.node("MatMul", [self.x, w])
            self.x = self.node("Add", [self.x, self.bias(scales, False)])
        self.now = [outputs]
        self.activation(relu, out)

    def max_pool(self, kernel, stride, pad=0):
        self.window(self.now[0], kernel, stride, pad)
        self.x = self.node("MaxPool", [self.x], kernel_shape=[kernel] * 2, strides=[stride] * 2,
                           pads=[pad] * 4)

    def average_pool(self, kernel, stride, out, pad=0):
        self.window(self.now[0], kernel, stride, pad)
        self.x = self.node("AveragePool", [self.x], kernel_shape=[kernel] * 2,
                           strides=[stride] * 2, pads=[pad] * 4, count_include_pad=1)
        self.quantize(*out)

    def global_average_pool(self, out):
        self.x = self.node("GlobalAveragePool", [self.x])
        self.now = [self.now[0], 1, 1]
        self.quantize(*out)

    def truncated_pool(self, kernel, out_bits):
        """QONNX's quantized average pool (as Brevitas writes it): AveragePool, Mul by the
        window size (the sum), Trunc to ``out_bits`` (version 1 or 2, by the QONNX opset)."""
        scale, _, bits, signed, _, _ = self.q
        self.window(self.now[0], kernel, kernel, 0)
        self.x = self.node("AveragePool", [self.x], kernel_shape=[kernel] * 2,
                           strides=[kernel] * 2)
        self.x = self.node("Mul", [self.x, self.const(np.float32(kernel * kernel))])
        in_bits = bits + int(np.ceil(np.log2(kernel * kernel)))
        dropped = in_bits - out_bits
        inputs = [self.x, self.const(np.float32(scale)), self.const(np.float32(0)),
                  self.const(np.float32(in_bits))]
        if self.qonnx_opset == 1:
            inputs.append(self.const(np.float32(out_bits)))
            out_scale = scale
        else:
            out_scale = scale * 2.0 ** dropped
            inputs += [self.const(np.float32(out_scale)), self.const(np.float32(out_bits))]
        self.x = self.node("Trunc", inputs, domain=QONNX_DOMAIN, rounding_mode="FLOOR",
                           **({"signed": int(signed)} if self.qonnx_opset > 1 else {}))
        self.q = (out_scale, 0, out_bits, signed, *code_range_of(out_bits, signed))

    def flatten(self):
        self.x = self.node("Flatten", [self.x], axis=1)
        self.now = [self.current_features()]

    def residual(self, other, relu, out):
        self.x = self.node("Add", [self.x, other])
        self.activation(relu, out)

    def model(self):
        """The ONNX model."""
        output = helper.make_tensor_value_info(self.x, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "net", [self.input], [output], self.inits)
        opsets = [helper.make_opsetid("", 13)]
        if self.style == "qonnx":
            opsets.append(helper.make_opsetid(QONNX_DOMAIN, self.qonnx_opset))
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        return model

    def current_channels(self):
        return self.now[0]

    def current_features(self):
        return int(np.prod(self.now))

    def window(self, channels, kernel, stride, pad):
        _, height, width = self.now
        self.now = [channels, (height + 2 * pad - kernel) // stride + 1,
                    (width + 2 * pad - kernel) // stride + 1]

    def random_codes(self, n):
        """Random input codes of the model's input quantizer, shape (n, *shape), and the real
        inputs that quantize to them exactly."""
        scale, zero_point, _, _, low, high = self.input_q
        codes = self.rng.integers(low, high, size=(n, *self.shape), endpoint=True)
        return codes, ((codes - zero_point) * scale).astype(np.float32)


def code_range_of(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def run_reference(model, x):
    """The model's output for real inputs ``x``: onnxruntime for QCDQ, qonnx's execute_onnx
    for QONNX."""
    if any(op.domain == QONNX_DOMAIN for op in model.opset_import):
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = len(x)
        wrapper = ModelWrapper(model).transform(InferShapes())
        return execute_onnx(wrapper, {"x": x})[model.graph.output[0].name]
    import onnxruntime
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def pooled_residual_cnn(style, seed=5):
    """A digits-shaped (1x8x8 input, 10 outputs) CNN with an overlapping, padded max pool (3x3,
    stride 2, pad 1) and a residual add whose skip spans two convolutions, for the accelerator:
    4-bit unsigned activations, 4-bit signed weights."""
    net = Net(style, (1, 8, 8), scale=1.0, seed=seed)
    net.conv(4, 3, pad=1, out=(2.0 ** -1, 0, 4, False))
    net.max_pool(3, 2, pad=1)
    net.conv(4, 1, out=(2.0 ** -1, 0, 4, False))
    skip = net.x
    net.conv(4, 3, pad=1, out=(2.0 ** -1, 0, 4, False))
    net.conv(4, 3, pad=1, relu=False, out=(2.0 ** -1, 0, 4, False))
    net.residual(skip, relu=True, out=(2.0 ** -1, 0, 4, False))
    net.flatten()
    net.dense(10, relu=False, out=(2.0 ** -2, 0, 8, True))
    return net
