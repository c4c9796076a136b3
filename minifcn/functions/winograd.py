"""Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016): a 3x3 stride-1 convolution with 2.25x fewer
multiplications than im2col's GEMM. conv.py uses it for the 3x3 layers, forward and
both gradients, when the kernel set has the capability (the CPU ones: the bands and
GEMMs below are NumPy arrays).

Each 2x2 block of outputs (a "tile") reads one 4x4 patch d of the padded input, patches
of neighbouring tiles overlapping by two rows or columns. With

    B^T = [[1, 0, -1,  0],    G = [[  1,    0,   0],    A^T = [[1, 1,  1,  0],
           [0, 1,  1,  0],         [1/2,  1/2, 1/2],           [0, 1, -1, -1]]
           [0, -1, 1,  0],         [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]         [  0,    0,   1]]

one input channel's contribution to one output channel's tile is A^T [(G g G^T) * (B^T d B)] A,
* elementwise. The sum over input channels commutes with A^T . A, so it can be taken
first, separately at each of the 16 positions ab of the 4x4 transformed tile:

    U[ab]       = (G W G^T)[ab]        (C_out, C_in)    filter transform, once per call
    V[:, ab, :] = (B^T d B)[ab]        (C_in, tiles)    input transform
    M[:, ab, :] = U[ab] @ V[:, ab, :]  (C_out, tiles)   16 GEMMs
    y           = A^T M A + b                           output transform, 2x2 outputs a tile

The GEMMs do 16 C_out C_in multiply-adds per tile where im2col's does 4 outputs x 9 taps
= 36: 2.25x fewer. The transforms only add and subtract. In exact arithmetic the result
is the convolution's; in floating point it differs from im2col's by rounding (the sums
are short: about 1e-6 relative in float32).

The gradient to the input of a stride-1 3x3 convolution with padding p is itself such a
convolution, of gy with the weights flipped and their channel axes swapped, padding
2 - p (`adjoint_weight`), so conv.py runs both through `correlate`. The weight gradient
is the forward's adjoint in W, taken step by step backwards (`weight_grad`):

    dM[:, ab, :] = (A gy_tile A^T)[ab]          (C_out, tiles)   gy's 2x2 blocks to 4x4
    dU[ab]       = dM[:, ab, :] @ V[:, ab, :]^T (C_out, C_in)    16 GEMMs, summed over tiles
    dW           = G^T dU G                                      (C_out, C_in, 3, 3)

Bands. As conv.py walks an image in bands of output rows, `correlate` walks it in bands
of tile rows whose V takes about conv.column_buffer_bytes, reused from band to band.
V is (C_in, 16, length) and M (C_out, 16, length), the tiles of the band along the last
axis, so that each transform writes or reads one channel's 16 rows close together;
`length` >= the tiles of a band is an odd number of cache lines, so that those 16 rows
do not all map to the same cache sets. (Laid out (16, C, tiles), their distance was a
multiple of 4 KiB at 256 channels: all 16 rows in the same sets of the L1 cache.)

The kernel contract (kernel_set.py), NumPy in reference/winograd.py, numba in
cpu/winograd.py:
    winograd_input(x, ph, pw, first, rows, V)   V[:, :, :rows * cols] for tile rows
                                                [first, first + rows), cols tiles a row
    winograd_output(M, first, rows, bias, y)    y[:, 2 first : 2 first + 2 rows] = A^T M A + b
    winograd_gy(gy, first, rows, dM)            dM[:, :, :rows * cols] = A g A^T, g gy's
                                                2x2 blocks of those tile rows
"""
import numpy

B_T = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G = numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]])

# conv.py takes this path only when the weight has at least this many channels on both
# sides: with fewer, the 16 GEMMs are too thin to gain on im2col's one. Every 3x3 layer
# of VGG16-FCN but conv1_1 (3 input channels) has 64 or more: benchmarks/cpu_ops.py's
# conv rows, recorded with Winograd (results/cpu-ops-*) and without (results/
# im2col-only/), compare them layer by layer. The default small net (8 to 64 channels)
# trains as fast either way (README, "The default run").
min_channels = 64


def applies(kernels, weight_shape, geo):
    """Whether conv.py runs a convolution on the kernel set `kernels` with a weight of
    this shape (3x3, either channel order) through this module, all three passes:
    padding at most 2, so that the input gradient's, 2 - p, is a padding too."""
    return (kernels.winograd and tuple(weight_shape[2:]) == (3, 3)
            and (geo.sy, geo.sx, geo.dy, geo.dx, geo.groups) == (1, 1, 1, 1, 1)
            and max(geo.ph, geo.pw) <= 2 and min(weight_shape[:2]) >= min_channels)


def adjoint_weight(weight):
    """The weight whose convolution (padding 2 - p) is the input gradient of `weight`'s
    stride-1 convolution with padding p: flipped in space, channel axes swapped."""
    return numpy.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def _g_kron_g(dtype):
    """(16, 9): entry (ab, ij) is G[a, i] G[b, j], so that U = G W G^T is one GEMM."""
    return numpy.einsum("ai,bj->abij", G, G).reshape(16, 9).astype(dtype)


def filter_transform(weight):
    """U (16, C_out, C_in): G W G^T for each channel pair, its 4x4 entries flattened,
    as one GEMM rather than C_out C_in small (4x3)(3x3)(3x4) products."""
    c_out, c_in = weight.shape[:2]
    return (_g_kron_g(weight.dtype) @ weight.reshape(c_out * c_in, 9).T).reshape(16, c_out, c_in)


def correlate(kernels, x, weight, ph, pw, bias=None, band_bytes=16 * 2**20):
    """With the transforms of the kernel set `kernels`, 3x3 stride-1 cross-correlation of x (N, C_in, H, W) with weight (C_out, C_in, 3, 3),
    padding (ph, pw) >= 0, plus bias if given: (N, C_out, H + 2 ph - 2, W + 2 pw - 2)."""
    c_out = weight.shape[0]
    out_h, out_w = x.shape[2] + 2 * ph - 2, x.shape[3] + 2 * pw - 2
    bands = _Bands(kernels, x, ph, pw, c_out, out_w, band_bytes)
    u = filter_transform(weight)
    zero_bias = numpy.zeros(c_out, x.dtype) if bias is None else bias
    y = numpy.empty((x.shape[0], c_out, out_h, out_w), x.dtype)
    for n, first, band_rows, tiles in bands:
        v, m = bands.v[:, :, :tiles], bands.m[:, :, :tiles]
        numpy.matmul(u, v.transpose(1, 0, 2), out=m.transpose(1, 0, 2))
        kernels.winograd_output(bands.m, first, band_rows, zero_bias, y[n])
    return y


def weight_grad(kernels, x, gy, ph, pw, band_bytes=16 * 2**20):
    """The gradient of sum(gy * correlate(x, W, ph, pw)) in W: (C_out, C_in, 3, 3)."""
    c_out = gy.shape[1]
    bands = _Bands(kernels, x, ph, pw, c_out, gy.shape[3], band_bytes)
    gy = numpy.ascontiguousarray(gy)
    du = product = None
    for n, first, band_rows, tiles in bands:
        kernels.winograd_gy(gy[n], first, band_rows, bands.m)
        dm, v = bands.m[:, :, :tiles], bands.v[:, :, :tiles]
        term = numpy.matmul(dm.transpose(1, 0, 2), v.transpose(1, 2, 0), out=product)
        if du is None:
            du, product = term, numpy.empty_like(term)
        else:
            du += term
    c_in = x.shape[1]
    return (du.reshape(16, c_out * c_in).T @ _g_kron_g(x.dtype)).reshape(c_out, c_in, 3, 3)


class _Bands:
    """Walks x (N, C_in, H, W) band by band, yielding (n, first, rows, tiles) with V of
    that band's tiles transformed in `v` (C_in, 16, length); `m` (C_out, 16, length) is
    the band's buffer for M or dM."""

    def __init__(self, kernels, x, ph, pw, c_out, out_w, band_bytes):
        self.kernels, self.x, self.ph, self.pw = kernels, numpy.ascontiguousarray(x), ph, pw
        c_in, height = x.shape[1:3]
        self.tile_rows, self.tile_cols = -(-(height + 2 * ph - 2) // 2), -(-out_w // 2)
        self.rows = max(1, min(self.tile_rows,
                               band_bytes // (16 * c_in * self.tile_cols * x.itemsize)))
        length = _row_length(self.rows * self.tile_cols, x.itemsize)
        self.v = numpy.empty((c_in, 16, length), x.dtype)
        self.m = numpy.empty((c_out, 16, length), x.dtype)

    def __iter__(self):
        for n in range(self.x.shape[0]):
            for first in range(0, self.tile_rows, self.rows):
                rows = min(self.rows, self.tile_rows - first)  # the last band may be shorter
                self.kernels.winograd_input(self.x[n], self.ph, self.pw, first, rows, self.v)
                yield n, first, rows, rows * self.tile_cols


def _row_length(tiles, itemsize, line_bytes=64):
    """The smallest odd number of cache lines that holds `tiles` entries, in entries."""
    per_line = line_bytes // itemsize
    lines = -(-tiles // per_line)
    return (lines + 1 - lines % 2) * per_line
