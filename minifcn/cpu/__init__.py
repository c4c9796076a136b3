"""numba kernels for the CPU hot paths, same contracts as the NumPy versions.

backend.kernel(name, ...) looks a hot path up here by name; a name not defined here
falls back to the NumPy version. One module per family, each opening with its math and
how its loops map onto threads:

    im2col.py    im2col, col2im (whole images), im2col_tile, col2im_tile (bands of
                 output rows, for the blocked convolution in functions/conv.py)
    pooling.py   max_pool_forward, max_pool_backward, avg_pool_forward, avg_pool_backward
    loss.py      softmax_cross_entropy_forward, softmax_cross_entropy_backward
    solver.py    sgd_update (the SGD step in one pass over memory)
    dropout.py   dropout (mask hashed and applied in one pass)
    winograd.py  winograd_input, winograd_output, winograd_gy (F(2x2, 3x3)'s transforms)

Every kernel is compiled for the dtypes it is first called with (float32, float64) and
cached on disk (cache=True), so only the first run on a machine pays for compiling.

Threads. The parallel loops (prange) run on numba's thread pool, the GEMMs between
them on BLAS's. Which pool numba uses, and how many threads each runs, matters a great
deal and is a setting of the whole process, so importing this package changes none of
it: runtime.configure_process() makes those settings, and says why.
"""
from .dropout import dropout
from .im2col import col2im, col2im_tile, im2col, im2col_tile
from .loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .pooling import avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward
from .solver import sgd_update
from .winograd import winograd_gy, winograd_input, winograd_output

__all__ = ["avg_pool_backward", "avg_pool_forward", "col2im", "col2im_tile", "dropout", "im2col",
           "im2col_tile", "max_pool_backward", "max_pool_forward",
           "sgd_update", "softmax_cross_entropy_backward", "softmax_cross_entropy_forward",
           "winograd_gy", "winograd_input", "winograd_output"]
