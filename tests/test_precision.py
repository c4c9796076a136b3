"""minifcn/precision.py on the CPU: the names, the refusals (the CPU has neither bf16 nor
TF32), and ops refusing bf16 tensors there. The GPU side runs on the emulated CuPy in
tests/cuda/test_bf16.py."""
import numpy
import pytest

import minifcn as mf
from minifcn import bfloat16, precision
from minifcn import functions as F
from minifcn.errors import OptionError
from minifcn.train import TrainConfig, train


def test_the_precisions():
    assert precision.PRECISIONS == ("fp32", "tf32", "bf16")
    assert TrainConfig().precision == "fp32"
    for name in precision.PRECISIONS:
        assert precision.check(name, "cuda") == name
    assert precision.check("fp32", "cpu") == "fp32"


@pytest.mark.parametrize("name", ["tf32", "bf16"])
def test_the_cpu_refuses_tf32_and_bf16(name):
    with pytest.raises(OptionError, match=f"^precision {name} needs the GPU \\(device cuda\\)"):
        precision.check(name, "cpu")
    with pytest.raises(OptionError):
        with precision.use(name, "cpu"):
            pass


def test_a_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16, not 'fp16'"):
        TrainConfig(precision="fp16")


def test_training_in_bf16_on_the_cpu_stops_before_writing_anything(tmp_path):
    config = TrainConfig(precision="bf16", out=str(tmp_path / "run"), iterations=1,
                         val_interval=1, progress=False)
    with pytest.raises(OptionError, match="precision bf16 needs the GPU"):
        train(config)
    assert list(tmp_path.iterdir()) == []


def _bf16_on_cpu(shape=(1, 2, 4, 4)):
    return mf.Tensor(bfloat16.from_float32(numpy.ones(shape, numpy.float32)))


@pytest.mark.parametrize("op, call", [
    ("relu", lambda x: F.relu(x)),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2)),
    ("conv2d", lambda x: F.conv2d(x, mf.Tensor(numpy.ones((3, 2, 1, 1), numpy.float32)))),
    ("add", lambda x: F.add(x, x)),
])
def test_ops_refuse_bf16_on_the_cpu(op, call):
    with pytest.raises(TypeError, match=f"^{op}: .* is bf16 with shape \\(1, 2, 4, 4\\) on the "
                                        f"CPU, which has no bf16 kernels: bf16 runs on the GPU only"):
        call(_bf16_on_cpu())


@pytest.mark.parametrize("op, call", [
    ("linear", lambda x: F.linear(x, mf.Tensor(numpy.ones((3, 32), numpy.float32)))),
    ("softmax_cross_entropy", lambda x: F.softmax_cross_entropy(x, numpy.zeros((1, 4, 4), int))),
    ("sum", lambda x: x.sum()),
])
def test_ops_without_bf16_name_themselves(op, call):
    with pytest.raises(TypeError, match=f"^{op}: .* is bf16 .* which {op} does not take: cast it "
                                        f"to float32 first"):
        call(_bf16_on_cpu())


def test_autocast_on_the_cpu_is_refused_by_the_convolution():
    x = mf.Tensor(numpy.ones((1, 2, 4, 4), numpy.float32))
    w = mf.Tensor(numpy.ones((3, 2, 1, 1), numpy.float32))
    assert not precision.autocasting()
    with precision.autocast():
        assert precision.autocasting()
        with pytest.raises(TypeError, match="conv2d: autocast \\(bf16\\) runs on the GPU only"):
            F.conv2d(x, w)
        F.relu(x)  # the other ops keep the dtype they are given
    assert not precision.autocasting()


def test_cast_refuses_other_dtypes():
    with pytest.raises(TypeError, match="cast: converts between float32, float64 and bf16"):
        F.cast(mf.Tensor(numpy.ones(3, numpy.float32)), numpy.int32)
    x = mf.Tensor(numpy.ones(3, numpy.float32))
    assert F.cast(x, numpy.float32) is x


def test_cast_passes_the_float64_gradient_check():
    """F.cast is the identity up to rounding, so its check needs points where rounding
    is exact: multiples of 1/8 below 4 in magnitude are exact in float32 and in bf16 (8
    significant bits), so the float64 central differences with eps = 1/8 measure the
    Jacobian exactly (1 on the diagonal). The analytic side is the incoming gradient cast
    to the narrow dtype and back, as the cast's backward is meant to do: exact up to one
    rounding of that dtype (2^-8 relative for bf16, 2^-23 for float32)."""
    from minifcn.gradcheck import check_backward
    x = numpy.arange(-12, 12, dtype=numpy.float64).reshape(4, 6) / 4
    for dtype, rtol in ((numpy.float32, 2.0**-23), (bfloat16.DTYPE, 2.0**-8)):
        check_backward(lambda t, dtype=dtype: F.cast(F.cast(t, dtype), numpy.float64), [x],
                       eps=0.125, atol=0.0, rtol=rtol)
