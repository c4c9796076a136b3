"""Bad input raises ValueError or TypeError naming the op and the shapes (or the bad
value); nothing broadcasts or converts silently."""
import re

import numpy
import pytest

import minifcn as mf
from minifcn import functions as F


def t(*shape, dtype=numpy.float64):
    return mf.Tensor(numpy.zeros(shape, dtype=dtype))


def esc(*parts):
    """A regex matching the parts in order, anything between them."""
    return ".*".join(re.escape(str(p)) for p in parts)


X = t(2, 3, 5, 5)
W = t(4, 3, 3, 3)

# (id, call, exception, pattern)
CASES = [
    # conv2d
    ("conv-x-rank", lambda: F.conv2d(t(3, 5, 5), W), ValueError, esc("conv2d", "x", (3, 5, 5))),
    ("conv-w-rank", lambda: F.conv2d(X, t(4, 3, 3)), ValueError, esc("conv2d", "weight", (4, 3, 3))),
    ("conv-channels", lambda: F.conv2d(X, t(4, 2, 3, 3)), ValueError,
     esc("conv2d", "channel", (2, 3, 5, 5), (4, 2, 3, 3))),
    ("conv-groups-divide", lambda: F.conv2d(t(1, 4, 5, 5), t(3, 2, 3, 3), groups=2), ValueError,
     esc("conv2d", "groups=2", (1, 4, 5, 5), (3, 2, 3, 3))),
    ("conv-groups-mismatch", lambda: F.conv2d(t(1, 4, 5, 5), t(4, 4, 3, 3), groups=2), ValueError,
     esc("conv2d", (1, 4, 5, 5), (4, 4, 3, 3))),
    ("conv-groups-not-dividing-cin", lambda: F.conv2d(t(1, 5, 5, 5), t(3, 1, 3, 3), groups=3),
     ValueError, esc("conv2d", "groups=3", (1, 5, 5, 5))),
    ("conv-window-too-big", lambda: F.conv2d(X, t(4, 3, 8, 3), padding=1), ValueError,
     esc("conv2d", "8x3", "larger", (2, 3, 5, 5), (4, 3, 8, 3))),
    ("conv-dilated-window-too-big", lambda: F.conv2d(X, W, dilation=3), ValueError,
     esc("conv2d", "7x7", (2, 3, 5, 5))),
    ("conv-stride-0", lambda: F.conv2d(X, W, stride=0), ValueError, esc("conv2d", "stride", "0")),
    ("conv-stride-negative", lambda: F.conv2d(X, W, stride=(1, -2)), ValueError,
     esc("conv2d", "stride", "-2")),
    ("conv-padding-negative", lambda: F.conv2d(X, W, padding=-1), ValueError,
     esc("conv2d", "padding", "-1")),
    ("conv-dilation-0", lambda: F.conv2d(X, W, dilation=0), ValueError, esc("conv2d", "dilation", "0")),
    ("conv-groups-0", lambda: F.conv2d(X, W, groups=0), ValueError, esc("conv2d", "groups", "0")),
    ("conv-stride-float", lambda: F.conv2d(X, W, stride=1.5), TypeError, esc("conv2d", "stride", "1.5")),
    ("conv-stride-triple", lambda: F.conv2d(X, W, stride=(1, 1, 1)), TypeError, esc("conv2d", "stride")),
    ("conv-empty-kernel", lambda: F.conv2d(X, t(4, 3, 0, 3)), ValueError, esc("conv2d", (4, 3, 0, 3))),
    ("conv-empty-x", lambda: F.conv2d(t(0, 3, 5, 5), W), ValueError, esc("conv2d", (0, 3, 5, 5))),
    ("conv-int-x", lambda: F.conv2d(t(2, 3, 5, 5, dtype=numpy.int64), W), TypeError,
     esc("conv2d", "x", "int64", (2, 3, 5, 5))),
    ("conv-float16-w", lambda: F.conv2d(X, t(4, 3, 3, 3, dtype=numpy.float16)), TypeError,
     esc("conv2d", "weight", "float16", (4, 3, 3, 3))),
    ("conv-dtype-mismatch", lambda: F.conv2d(X, t(4, 3, 3, 3, dtype=numpy.float32)), TypeError,
     esc("conv2d", "float64", "float32")),
    ("conv-bias-shape", lambda: F.conv2d(X, W, t(3)), ValueError, esc("conv2d", "bias", (3,), (4,))),
    ("conv-bias-rank", lambda: F.conv2d(X, W, t(4, 1)), ValueError, esc("conv2d", "bias", (4, 1))),
    ("conv-bias-dtype", lambda: F.conv2d(X, W, t(4, dtype=numpy.float32)), TypeError,
     esc("conv2d", "bias", "float32")),
    ("conv-list-input", lambda: F.conv2d([[1.0]], W), TypeError, esc("conv2d", "x", "list")),
    # conv_transpose2d
    ("deconv-x-rank", lambda: F.conv_transpose2d(t(3, 4, 4), t(3, 2, 4, 4)), ValueError,
     esc("conv_transpose2d", (3, 4, 4))),
    ("deconv-channels", lambda: F.conv_transpose2d(t(1, 3, 4, 4), t(2, 3, 4, 4)), ValueError,
     esc("conv_transpose2d", "channel", (1, 3, 4, 4), (2, 3, 4, 4))),
    ("deconv-groups", lambda: F.conv_transpose2d(t(1, 3, 4, 4), t(3, 1, 4, 4), groups=2), ValueError,
     esc("conv_transpose2d", "groups=2", (1, 3, 4, 4), (3, 1, 4, 4))),
    ("deconv-empty-output", lambda: F.conv_transpose2d(t(1, 3, 1, 1), t(3, 2, 2, 2), padding=1),
     ValueError, esc("conv_transpose2d", "padding", (1, 3, 1, 1), (3, 2, 2, 2))),
    ("deconv-stride-0", lambda: F.conv_transpose2d(t(1, 3, 4, 4), t(3, 2, 4, 4), stride=0),
     ValueError, esc("conv_transpose2d", "stride", "0")),
    ("deconv-padding-negative", lambda: F.conv_transpose2d(t(1, 3, 4, 4), t(3, 2, 4, 4), padding=-2),
     ValueError, esc("conv_transpose2d", "padding", "-2")),
    ("deconv-bias", lambda: F.conv_transpose2d(t(1, 3, 4, 4), t(3, 2, 4, 4), t(3)), ValueError,
     esc("conv_transpose2d", "bias", (3,), (2,))),
    ("deconv-int-x", lambda: F.conv_transpose2d(t(1, 3, 4, 4, dtype=numpy.int32), t(3, 2, 4, 4)),
     TypeError, esc("conv_transpose2d", "int32", (1, 3, 4, 4))),
    ("deconv-dtype-mismatch", lambda: F.conv_transpose2d(t(1, 3, 4, 4, dtype=numpy.float32),
                                                         t(3, 2, 4, 4)),
     TypeError, esc("conv_transpose2d", "float32", "float64")),
    # pooling
    *[case for op_name, op in (("max_pool2d", F.max_pool2d), ("avg_pool2d", F.avg_pool2d)) for case in [
        (f"{op_name}-rank", lambda op=op: op(t(5, 5), 2), ValueError, esc(op_name, (5, 5))),
        (f"{op_name}-kernel-0", lambda op=op: op(X, 0), ValueError, esc(op_name, "kernel_size", "0")),
        (f"{op_name}-kernel-negative", lambda op=op: op(X, (2, -1)), ValueError,
         esc(op_name, "kernel_size", "-1")),
        (f"{op_name}-stride-0", lambda op=op: op(X, 2, 0), ValueError, esc(op_name, "stride", "0")),
        (f"{op_name}-padding-negative", lambda op=op: op(X, 2, 2, -1), ValueError,
         esc(op_name, "padding", "-1")),
        (f"{op_name}-padding-equals-kernel", lambda op=op: op(X, 2, 2, 2), ValueError,
         esc(op_name, "padding", (2, 2), (2, 2))),
        (f"{op_name}-padding-exceeds-kernel", lambda op=op: op(X, (3, 2), 1, (1, 3)), ValueError,
         esc(op_name, "padding", (1, 3), (3, 2))),
        (f"{op_name}-window-too-big", lambda op=op: op(t(1, 1, 2, 9), 5, 1, 1), ValueError,
         esc(op_name, "5x5", "larger", (1, 1, 2, 9))),
        (f"{op_name}-int-x", lambda op=op: op(t(1, 1, 4, 4, dtype=numpy.uint8), 2), TypeError,
         esc(op_name, "uint8", (1, 1, 4, 4))),
        (f"{op_name}-empty-x", lambda op=op: op(t(1, 0, 4, 4), 2), ValueError,
         esc(op_name, (1, 0, 4, 4))),
    ]],
    # linear
    ("linear-features", lambda: F.linear(t(2, 5), t(3, 4)), ValueError, esc("linear", (2, 5), (3, 4))),
    ("linear-features-4d", lambda: F.linear(t(2, 3, 2, 2), t(3, 13)), ValueError,
     esc("linear", (2, 3, 2, 2), (3, 13))),
    ("linear-x-rank-1", lambda: F.linear(t(4), t(3, 4)), ValueError, esc("linear", (4,))),
    ("linear-w-rank", lambda: F.linear(t(2, 4), t(3, 4, 1)), ValueError, esc("linear", "weight", (3, 4, 1))),
    ("linear-bias", lambda: F.linear(t(2, 4), t(3, 4), t(4)), ValueError, esc("linear", "bias", (4,), (3, 4))),
    ("linear-dtype", lambda: F.linear(t(2, 4, dtype=numpy.float32), t(3, 4)), TypeError,
     esc("linear", "float32", "float64")),
    ("linear-int", lambda: F.linear(t(2, 4, dtype=numpy.int64), t(3, 4)), TypeError,
     esc("linear", "int64", (2, 4))),
    # activations
    ("relu-int", lambda: F.relu(t(2, 3, dtype=numpy.int32)), TypeError, esc("relu", "int32", (2, 3))),
    ("dropout-int", lambda: F.dropout(t(2, 3, dtype=numpy.int32)), TypeError,
     esc("dropout", "int32", (2, 3))),
    ("dropout-p-1", lambda: F.dropout(X, p=1.0), ValueError, esc("dropout", "p", "1.0")),
    ("dropout-p-negative", lambda: F.dropout(X, p=-0.1), ValueError, esc("dropout", "p", "-0.1")),
    # array ops
    ("add-shapes", lambda: t(2, 3) + t(3, 2), ValueError, esc("add", (2, 3), (3, 2))),
    ("add-no-broadcast", lambda: t(2, 3) + t(1, 3), ValueError, esc("add", (2, 3), (1, 3))),
    ("add-no-broadcast-scalar", lambda: F.add(t(2, 3), t()), ValueError, esc("add", (2, 3), "()")),
    ("add-dtype", lambda: t(2, 3) + t(2, 3, dtype=numpy.float32), TypeError,
     esc("add", "float64", "float32")),
    ("add-python-float", lambda: t(2, 3) + 1.0, TypeError, esc("add", "float")),
    ("scale-by-tensor", lambda: t(2, 3) * t(2, 3), TypeError, esc("scale", "Tensor")),
    ("scale-by-array", lambda: F.scale(t(2, 3), numpy.ones((2, 3))), TypeError, esc("scale", "ndarray")),
    ("scale-int", lambda: t(2, 3, dtype=numpy.int64) * 2.0, TypeError, esc("scale", "int64", (2, 3))),
    ("reshape-size", lambda: t(2, 3).reshape(4), ValueError, esc("reshape", (2, 3), (4,))),
    ("crop-does-not-fit", lambda: F.crop(t(1, 1, 5, 5), (3, 3), (3, 0)), ValueError,
     esc("crop", "3x3", (3, 0), (1, 1, 5, 5))),
    ("crop-too-wide", lambda: F.crop(t(1, 1, 5, 5), t(1, 1, 2, 6), 0), ValueError,
     esc("crop", "2x6", (1, 1, 5, 5))),
    ("crop-negative-offset", lambda: F.crop(t(1, 1, 5, 5), (2, 2), (-1, 0)), ValueError,
     esc("crop", "offset", "-1")),
    ("crop-reference-rank", lambda: F.crop(t(1, 1, 5, 5), t(2, 2), 0), ValueError,
     esc("crop", "reference", (2, 2))),
    ("crop-x-rank", lambda: F.crop(t(5, 5), (2, 2), 0), ValueError, esc("crop", (5, 5))),
    ("crop-int", lambda: F.crop(t(1, 1, 5, 5, dtype=numpy.int64), (2, 2), 0), TypeError,
     esc("crop", "int64", (1, 1, 5, 5))),
    ("concat-shapes", lambda: F.concat([t(1, 2, 3, 3), t(1, 2, 4, 3)]), ValueError,
     esc("concat", (1, 2, 3, 3), (1, 2, 4, 3))),
    ("concat-ranks", lambda: F.concat([t(1, 2, 3, 3), t(1, 2, 3)]), ValueError,
     esc("concat", (1, 2, 3, 3), (1, 2, 3))),
    ("concat-axis", lambda: F.concat([t(1, 2), t(1, 2)], axis=2), ValueError, esc("concat", "axis", "2")),
    ("concat-empty", lambda: F.concat([]), ValueError, esc("concat")),
    ("concat-dtype", lambda: F.concat([t(1, 2), t(1, 2, dtype=numpy.float32)]), TypeError,
     esc("concat", "float64", "float32")),
    # local_response_norm
    ("lrn-rank", lambda: F.local_response_norm(t(3, 4, 4)), ValueError,
     esc("local_response_norm", (3, 4, 4))),
    ("lrn-size-0", lambda: F.local_response_norm(X, size=0), ValueError,
     esc("local_response_norm", "size", "0")),
    ("lrn-k-0", lambda: F.local_response_norm(X, k=0.0), ValueError, esc("local_response_norm", "k")),
    ("lrn-int", lambda: F.local_response_norm(t(1, 3, 2, 2, dtype=numpy.int16)), TypeError,
     esc("local_response_norm", "int16", (1, 3, 2, 2))),
    # softmax_cross_entropy
    ("loss-label-too-big", lambda: F.softmax_cross_entropy(t(1, 3, 2, 2), numpy.array([[[0, 3], [1, 2]]])),
     ValueError, esc("softmax_cross_entropy", "[0, 3)", "[3]", (1, 2, 2))),
    ("loss-label-negative", lambda: F.softmax_cross_entropy(t(1, 3, 1, 2), numpy.array([[[-1, 0]]])),
     ValueError, esc("softmax_cross_entropy", "[0, 3)", "[-1]")),
    ("loss-label-255-not-ignored", lambda: F.softmax_cross_entropy(
        t(1, 21, 1, 2), numpy.array([[[255, 0]]]), ignore_index=-1),
     ValueError, esc("softmax_cross_entropy", "[0, 21)", "ignore_index=-1", "[255]")),
    ("loss-shape", lambda: F.softmax_cross_entropy(t(2, 3, 4, 4), numpy.zeros((2, 4, 5), int)),
     ValueError, esc("softmax_cross_entropy", (2, 4, 5), (2, 3, 4, 4))),
    ("loss-shape-channel-axis", lambda: F.softmax_cross_entropy(t(2, 3, 4, 4), numpy.zeros((2, 1, 4, 4), int)),
     ValueError, esc("softmax_cross_entropy", (2, 1, 4, 4), (2, 3, 4, 4))),
    ("loss-float-labels", lambda: F.softmax_cross_entropy(t(1, 3, 2, 2), numpy.zeros((1, 2, 2))),
     TypeError, esc("softmax_cross_entropy", "target", "float64", (1, 2, 2))),
    ("loss-float-label-tensor", lambda: F.softmax_cross_entropy(t(1, 3, 2, 2), t(1, 2, 2)),
     TypeError, esc("softmax_cross_entropy", "target", "float64")),
    ("loss-int-score", lambda: F.softmax_cross_entropy(t(1, 3, 2, 2, dtype=numpy.int64),
                                                       numpy.zeros((1, 2, 2), int)),
     TypeError, esc("softmax_cross_entropy", "score", "int64", (1, 3, 2, 2))),
    ("loss-score-rank", lambda: F.softmax_cross_entropy(t(3, 2, 2), numpy.zeros((2, 2), int)),
     ValueError, esc("softmax_cross_entropy", "score", (3, 2, 2))),
]


@pytest.mark.parametrize("call, exception, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_bad_input_leaves_no_graph_behind():
    """A failed call records nothing: the input's later backward is unaffected."""
    x = mf.Tensor(numpy.ones((1, 1, 3, 3)), requires_grad=True)
    with pytest.raises(ValueError):
        F.max_pool2d(x, 5)
    y = F.relu(x)
    y.backward(numpy.ones(y.shape))
    numpy.testing.assert_array_equal(x.grad, numpy.ones((1, 1, 3, 3)))
