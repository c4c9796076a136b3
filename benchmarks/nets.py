"""The nets the whole-net benchmarks time, built once for every engine and device:
FCN-32s and FCN-8s at batch 1 with the FCN-32s solver (SGD lr 1e-10, momentum 0.99,
weight decay 5e-4) and SoftmaxWithLoss with normalize false, in minifcn and, layer for
layer, in PyTorch. cpu_nets.py runs them on the CPU, gpu_net.py on the GPU.

Each builder returns (train_step, inference) closures:

    train_step   forward, loss, backward, SGD update
    inference    forward only, eval mode, no graph
"""
import contextlib

import numpy

N_CLASS = 21
NETS = ("fcn32s", "fcn8s")
MINIFCN_OPTIONS = {}  # model options every minifcn net here is built with (tests narrow it)


def minifcn_passes(net_name, size, device="cpu", seed=0, autocast=False, **model_options):
    """minifcn's net on "cpu" or "cuda"; `model_options` (widths, fc_width) go to the model.
    `autocast` (the GPU only) runs the forward pass under minifcn.precision.autocast():
    bf16 activations and GEMMs, float32 weights, a float32 loss."""
    import minifcn as mf
    from minifcn import backend, functions as F, models
    from minifcn.optim import SGD

    options = {**MINIFCN_OPTIONS, **model_options}
    net = {"fcn32s": models.FCN32s, "fcn8s": models.FCN8s}[net_name](n_class=N_CLASS, **options).to(device)
    rng = numpy.random.default_rng(seed)
    image = mf.Tensor(backend.to_device(rng.standard_normal((1, 3, size, size)).astype(numpy.float32),
                                        device))
    label = backend.to_device(rng.integers(0, N_CLASS, (1, size, size)), device)
    solver = SGD(net, lr=1e-10, momentum=0.99, weight_decay=5e-4)
    return _passes(net, solver, image, mf.no_grad, lambda score: F.softmax_cross_entropy(
        score, label, ignore_index=255, normalize=False),
        lambda: mf.precision.autocast(autocast))


def _passes(net, solver, image, no_grad, loss_of, forward_context=contextlib.nullcontext):
    """The (train_step, inference) closures, written once for both engines: `loss_of`
    maps the score to the engine's summed softmax loss, `no_grad` is its context, and
    `forward_context` wraps the forward pass and the loss (PyTorch's autocast)."""
    def train_step():
        net.train()
        solver.zero_grad()
        with forward_context():
            loss = loss_of(net(image))
        loss.backward()
        solver.step()

    def inference():
        net.eval()
        with no_grad(), forward_context():
            net(image)
    return train_step, inference


def torch_fcn(torch, net_name):
    """The same nets in PyTorch: VGG16 trunk (conv1_1 pad 100, ceil pooling), fc6 7x7,
    fc7 1x1, score layers, fixed deconvolutions, Caffe's crop offsets."""
    from torch import nn
    import torch.nn.functional as TF

    class FCN(nn.Module):
        def __init__(self, skips):
            super().__init__()
            self.skips = skips
            blocks, channels = [], 3
            for width, convs in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
                layers = []
                for index in range(convs):
                    pad = 100 if not blocks and index == 0 else 1
                    layers += [nn.Conv2d(channels, width, 3, padding=pad), nn.ReLU(inplace=True)]
                    channels = width
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                blocks.append(nn.Sequential(*layers))
            self.blocks = nn.ModuleList(blocks)
            self.fc6, self.fc7 = nn.Conv2d(512, 4096, 7), nn.Conv2d(4096, 4096, 1)
            self.score_fr = nn.Conv2d(4096, N_CLASS, 1)
            fixed = lambda k, s: nn.ConvTranspose2d(N_CLASS, N_CLASS, k, s, bias=False)  # noqa
            if skips:
                self.score_pool4, self.score_pool3 = nn.Conv2d(512, N_CLASS, 1), nn.Conv2d(256, N_CLASS, 1)
                self.upscore2, self.upscore_pool4, self.upscore = fixed(4, 2), fixed(4, 2), fixed(16, 8)
            else:
                self.upscore = fixed(64, 32)
            for layer in (self.upscore2, self.upscore_pool4, self.upscore) if skips else (self.upscore,):
                layer.weight.requires_grad_(False)

        def forward(self, x):
            h, pools = x, []
            for block in self.blocks:
                h = block(h)
                pools.append(h)
            h = TF.dropout(TF.relu(self.fc6(h)), 0.5, self.training)
            h = TF.dropout(TF.relu(self.fc7(h)), 0.5, self.training)
            h = self.score_fr(h)
            if self.skips:
                crop = lambda t, ref, o: t[:, :, o: o + ref.shape[2], o: o + ref.shape[3]]  # noqa
                h = self.upscore2(h)
                h = self.upscore_pool4(h + crop(self.score_pool4(pools[3]), h, 5))
                h = self.upscore(h + crop(self.score_pool3(pools[2]), h, 9))
                return h[:, :, 31: 31 + x.shape[2], 31: 31 + x.shape[3]]
            return self.upscore(h)[:, :, 19: 19 + x.shape[2], 19: 19 + x.shape[3]]

    return FCN(skips=net_name == "fcn8s")


def torch_passes(net_name, size, device="cpu", seed=0, autocast=None):
    """PyTorch's net on "cpu" or "cuda"; `autocast` a dtype (torch.bfloat16) runs the
    forward pass and the loss under torch.autocast, the weights staying float32."""
    import torch
    import torch.nn.functional as TF

    torch.manual_seed(seed)
    net = torch_fcn(torch, net_name).to(device)
    image = torch.randn(1, 3, size, size, device=device)
    label = torch.randint(0, N_CLASS, (1, size, size), device=device)
    solver = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-10,
                             momentum=0.99, weight_decay=5e-4)
    context = (contextlib.nullcontext if autocast is None
               else lambda: torch.autocast(torch.device(device).type, dtype=autocast))
    return _passes(net, solver, image, torch.no_grad, lambda score: TF.cross_entropy(
        score, label, ignore_index=255, reduction="sum"), context)
