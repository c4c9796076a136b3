"""The whole-net part of `python -m benchmarks.gpu_kernels`: FCN-32s at 500x500, a
train step and inference, minifcn against the same net in PyTorch (cuDNN), TF32 off
then on (gpu_kernels.py's docstring says what is measured and how)."""
import numpy

from .gpu_kernels import cupy_events, ms_text, time_or_record_failure, torch_events


def torch_fcn32s(torch, n_class):
    """FCN-32s in PyTorch, layer for layer as minifcn.models.FCN32s (and Caffe's)."""
    nn = torch.nn
    layers, channels = [], 3
    for convs, width in zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)):
        for _ in range(convs):
            layers += [nn.Conv2d(channels, width, 3, padding=1 if layers else 100),
                       nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    layers += [nn.Conv2d(512, 4096, 7), nn.ReLU(inplace=True), nn.Dropout(0.5),
               nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True), nn.Dropout(0.5),
               nn.Conv2d(4096, n_class, 1)]

    class FCN32s(nn.Module):
        def __init__(self):
            super().__init__()
            self.score_fr = nn.Sequential(*layers)
            self.upscore = nn.ConvTranspose2d(n_class, n_class, 64, stride=32, bias=False)
            self.upscore.weight.requires_grad_(False)  # fixed bilinear, as in the reference

        def forward(self, x):
            upscore = self.upscore(self.score_fr(x))
            return upscore[:, :, 19: 19 + x.shape[2], 19: 19 + x.shape[3]]

    return FCN32s()


def benchmark_net(cupy, torch, repeat, failures, size=500, n_class=21):
    """Train step and inference of FCN-32s, TF32 off then on, minifcn vs PyTorch."""
    import minifcn
    from minifcn import cuda, functions as F
    from minifcn.models import FCN32s
    from minifcn.optim import SGD

    rng = numpy.random.default_rng(0)
    image = (50 * rng.standard_normal((1, 3, size, size))).astype(numpy.float32)
    labels = rng.integers(0, n_class, size=(1, size, size)).astype(numpy.int32)
    net = FCN32s(n_class=n_class).to("cuda")
    solver = SGD(net, lr=1e-10, momentum=0.99, weight_decay=5e-4)
    x, target = minifcn.Tensor(cupy.asarray(image)), cupy.asarray(labels)

    def train_step():
        net.train()
        solver.zero_grad()
        F.softmax_cross_entropy(net(x), target, normalize=False).backward()
        solver.step()

    def inference():
        net.eval()
        with minifcn.no_grad():
            net(x)

    calls = {"train step": (train_step, None), "inference": (inference, None)}
    if torch:
        t_net = torch_fcn32s(torch, n_class).cuda()
        t_solver = torch.optim.SGD([p for p in t_net.parameters() if p.requires_grad],
                                   lr=1e-10, momentum=0.99, weight_decay=5e-4)
        t_x, t_target = torch.as_tensor(image, device="cuda"), torch.as_tensor(labels, device="cuda").long()

        def torch_train_step():
            t_net.train()
            t_solver.zero_grad()
            torch.nn.functional.cross_entropy(t_net(t_x), t_target, ignore_index=255,
                                              reduction="sum").backward()
            t_solver.step()

        def torch_inference():
            t_net.eval()
            with torch.no_grad():
                t_net(t_x)

        calls = {"train step": (train_step, torch_train_step), "inference": (inference, torch_inference)}

    rows = []
    for precision, tf32 in (("fp32 (TF32 off)", False), ("TF32 on", True)):
        cuda.allow_tf32(tf32)
        if torch:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        for pass_name, (ours, theirs) in calls.items():
            what = f"FCN-32s {pass_name}, {precision}"
            rows.append({"model": f"FCN-32s {size}x{size}", "pass": pass_name, "precision": precision,
                         "minifcn_s": time_or_record_failure(f"{what} (minifcn)", ours, cupy_events,
                                                             repeat, failures, warmup=2),
                         "torch_s": theirs and time_or_record_failure(
                             f"{what} (PyTorch)", theirs, torch_events, repeat, failures, warmup=2)})
            print(f"  {what:40s} {ms_text(rows[-1]['minifcn_s']):>9s} ms", flush=True)
    cuda.allow_tf32(False)
    return rows, ["PyTorch runs with torch.backends.cudnn.benchmark = True (its fastest algorithms)."
                  if torch else "PyTorch with CUDA is not installed: no PyTorch column."]
