"""The training settings each net starts from: its solver, and the run's length.

A preset is what `TrainConfig` takes for every option left out (train.py's
`TrainConfig.solver`): the paper's Caffe solvers for its nets, fine-tuned from ImageNet
weights, and the small net's, which learns the built-in scenes from random weights.
They live here, apart from the solvers' code (optim.py) and the loop (train.py), so the
recipe of each experiment reads in one place.
"""

# The default run: a VGG-shaped FCN-8s narrow enough to train from scratch on a CPU.
SMALL_NET = dict(widths=(8, 16, 32, 64, 64), fc_width=128)
# Trained from random weights, with no normalization layers: Adam gets it going, and the
# "poly" decay settles it at the end (optim.py).
SMALL_SOLVER = dict(lr=1e-3, momentum=0.9, weight_decay=0.0, iter_size=1, normalize=True,
                    optimizer="adam", lr_policy="poly")
# Defaults that depend on the data: the built-in dataset trains in minutes, real ones in days.
BUILT_IN_RUN = dict(iterations=4500, val_interval=1500)
REAL_DATA_RUN = dict(iterations=100000, val_interval=4000)


def _caffe_solver(lr, momentum=0.99, iter_size=1, normalize=False):
    return dict(lr=lr, momentum=momentum, weight_decay=5e-4, iter_size=iter_size,
                normalize=normalize, optimizer="sgd", lr_policy="fixed")


# The paper's solvers (Caffe, fixed lr, batch 1); `normalize` is the loss normalization.
PRESETS = {
    "fcn32s": _caffe_solver(1e-10),
    "fcn16s": _caffe_solver(1e-12),
    "fcn8s": _caffe_solver(1e-14),
    "fcn8s-atonce": _caffe_solver(1e-10),
    "fcn-alexnet": _caffe_solver(1e-4, momentum=0.9, iter_size=20, normalize=True),
    # the paper's section 4.3: batch 20, fixed lr 5e-5 for FCN-GoogLeNet, normalized loss
    "fcn-googlenet": _caffe_solver(5e-5, momentum=0.9, iter_size=20, normalize=True),
    # the reference's nyud-fcn32s-* solvers (one stream 1e-10, two streams 1e-12)
    "fcn32s-rgbd": _caffe_solver(1e-10),
    "fcn32s-early-hha": _caffe_solver(1e-10),
    "fcn32s-late-hha": _caffe_solver(1e-12),
    "fcn16s-siftflow": _caffe_solver(1e-12),  # the reference's siftflow-fcn16s solver
}
