"""`mpiexec -n 2 minifcn train --distributed` against one process (distributed.py).

Each test starts 2 real ranks with the mpiexec of the MPICH wheel (`pip install -e
".[mpi]"`, which CI installs) and compares what rank 0 saved with a single process
that takes the whole global batch (--batch-size 2) in this process.

Tolerance. The two runs compute the same sums in a different order: one process sums
a parameter's gradient over both images inside its GEMMs, the ranks each over their
image and then across ranks. Float32 sums so reordered differ by a few units in the
last place of the gradient (~1e-7 relative); after the few steps here the weights and
solver states agree to rtol 1e-5, atol 1e-6 (Adam divides by sqrt(v), which can magnify
a difference where a gradient is near zero: its atol is 1e-5, a hundredth of its lr).
Each comparison also checks the distributed run moved away from a single process with
--batch-size 1, so equality is not reached by the second rank doing nothing.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import numpy
import pytest

from minifcn.checkpoint import load_checkpoint
from minifcn.train import TrainConfig, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(image_size=64, widths=(4, 4, 4, 4, 4), fc_width=8, val_images=2,
            progress=False, data_check=False)


def mpiexec():
    """The mpiexec beside this Python (the MPICH wheel's), else on PATH; a skip saying
    why where MPI is missing, a failure in CI, which installs it."""
    try:
        import mpi4py  # noqa: F401 - the ranks import it
    except ImportError:
        found = None
    else:
        found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None:
        message = 'mpi4py or mpiexec is missing: pip install -e ".[mpi]"'
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the distributed tests)")
        pytest.skip(message)
    return found


def options(**settings):
    """Command-line options of `minifcn train` for the TrainConfig fields `settings`."""
    words = []
    for key, value in settings.items():
        if key in ("progress", "data_check"):
            words += [] if value else [f"--no-{key.replace('_', '-')}"]
        elif isinstance(value, tuple):
            words += [f"--{key.replace('_', '-')}", ",".join(map(str, value))]
        else:
            words += [f"--{key.replace('_', '-')}", str(value)]
    return words


def run_ranks(arguments, ranks=2, script=None, environment=None, timeout=120):
    """`mpiexec -n ranks python -m minifcn.cli train --distributed ARGUMENTS` (or python
    -c script ARGUMENTS); the finished process and its seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           **(environment or {})}
    program = ["-m", "minifcn.cli"] if script is None else ["-c", textwrap.dedent(script)]
    command = [mpiexec(), "-n", str(ranks), sys.executable, *program, "train", "--distributed",
               *arguments]
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)
    return done, time.monotonic() - began


def single(out, **settings):
    train(TrainConfig(**{**TINY, **settings}, out=str(out)), log=lambda *said: None)
    return load_checkpoint(os.path.join(out, "checkpoint.npz"))


def distributed(out, script=None, **settings):
    done, _ = run_ranks(options(**{**TINY, **settings}, out=out), script=script)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_checkpoint(os.path.join(out, "checkpoint.npz"))


def assert_same_state(got, want, atol=1e-6, rtol=1e-5):
    assert got["iteration"] == want["iteration"]
    for part in ("params", "solver"):
        assert got[part].keys() == want[part].keys()
        for name, value in want[part].items():
            numpy.testing.assert_allclose(got[part][name], value, rtol=rtol, atol=atol,
                                          err_msg=f"{part} {name}")
    numpy.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)


def assert_moved_apart(got, other):
    assert any(not numpy.allclose(got["params"][name], value, rtol=1e-3, atol=1e-5)
               for name, value in other["params"].items())


@pytest.mark.parametrize("solver, atol", [
    (dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4), 1e-6),
    (dict(optimizer="adam", lr=1e-3), 1e-5),
])
def test_two_ranks_take_the_single_process_steps_on_the_global_batch(tmp_path, solver, atol):
    steps = dict(iterations=3, val_interval=3, **solver)
    got = distributed(str(tmp_path / "ranks"), batch_size=1, val_images=5, **steps)
    assert got["config"]["ranks"] == 2
    assert_same_state(got, single(tmp_path / "one", batch_size=2, val_images=5, **steps), atol=atol)
    # validation shared by the ranks (3 images and 2), its confusion matrices summed
    [row] = [json.loads(line) for line in open(tmp_path / "ranks" / "log.jsonl")]
    [want] = [json.loads(line) for line in open(tmp_path / "one" / "log.jsonl")]
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert row[key] == pytest.approx(want[key], abs=1e-3), key  # a pixel's argmax may flip
    assert_moved_apart(got, single(tmp_path / "half", batch_size=1, **steps))


SMALL_BUCKETS = """
    import sys
    from minifcn import cli, distributed
    distributed.BUCKET_BYTES = 1000  # the small net's gradients in many buckets
    sys.exit(cli.main(sys.argv[1:]))
"""


def test_iter_size_and_loss_sampling_on_two_ranks(tmp_path):
    # --iter-size 2: two micro-batches per step; --loss-sampling 0.5: the ranks count
    # different numbers of pixels, so the normalized loss needs the global count; and
    # the gradients travel in many small buckets.
    steps = dict(iterations=2, val_interval=2, iter_size=2, loss_sampling=0.5,
                 optimizer="sgd", lr=0.05)
    got = distributed(str(tmp_path / "ranks"), script=SMALL_BUCKETS, batch_size=1, **steps)
    assert_same_state(got, single(tmp_path / "one", batch_size=2, **steps))
    assert_moved_apart(got, single(tmp_path / "half", batch_size=1, **steps))


def test_a_resumed_distributed_run_goes_on_exactly(tmp_path):
    steps = dict(optimizer="sgd", lr=0.05, lr_policy="fixed", val_interval=2)  # poly: by --iterations
    out = str(tmp_path / "ranks")
    distributed(out, batch_size=1, iterations=2, **steps)
    done, _ = run_ranks(options(out=out, iterations=4, progress=False) + ["--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout and done.stdout.count("resumed from") == 1  # rank 0 speaks
    got = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert_same_state(got, single(tmp_path / "one", batch_size=2, iterations=4, **steps))
    rows = [line for line in open(os.path.join(out, "log.jsonl"))]
    assert len(rows) == 2  # validated at 2 and 4, by rank 0 alone


def test_resuming_with_another_number_of_ranks_is_refused(tmp_path):
    out = str(tmp_path / "ranks")
    distributed(out, batch_size=1, iterations=1, val_interval=1)
    done, _ = run_ranks(options(out=out, iterations=2, progress=False) + ["--resume"], ranks=3)
    assert done.returncode == 1
    assert "trained on 2 rank(s); resume it with the same: mpiexec -n 2" in done.stderr
    assert done.stderr.count("trained on") == 1  # rank 0 says it
    alone = subprocess.run([sys.executable, "-m", "minifcn.cli", "train", "--out", out, "--resume"],
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "PYTHONPATH": ROOT})
    assert alone.returncode == 1 and "mpiexec -n 2" in alone.stderr


def test_a_run_that_exists_is_refused_once_by_rank_0(tmp_path):
    out = str(tmp_path / "ranks")
    os.makedirs(out)
    with open(os.path.join(out, "log.jsonl"), "w"):
        pass
    done, _ = run_ranks(options(**TINY, out=out, iterations=1))
    assert done.returncode == 1
    assert done.stderr.count("holds a run") == 1, done.stderr
    assert "rank 0, 1:" in done.stderr


# A rank that fails: rank 1 dies, raises or hangs at step 1; the job must end in seconds
# with an error that names the rank, never hang.
FAILING_RANK = """
    import os, signal, sys, time
    from mpi4py import MPI
    from minifcn import cli, train
    how, real_step = os.environ["HOW"], train._train_step

    def step(*args):
        if MPI.COMM_WORLD.Get_rank() == 1 and args[-1] == 1:
            if how == "dies":
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "raises":
                raise RuntimeError("a bug on rank 1")
            time.sleep(600)  # hangs
        return real_step(*args)

    train._train_step = step
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("how, said", [
    ("dies", "PID {pid} RUNNING AT"),  # mpiexec names the process rank 0 said is rank 1
    ("raises", "rank 1 of 2 failed: RuntimeError: a bug on rank 1"),
    ("hangs", "rank 0 of 2 failed: no answer from the other ranks after"),
])
def test_a_failing_rank_ends_the_job_quickly_with_an_error(tmp_path, how, said):
    done, seconds = run_ranks(options(**TINY, out=str(tmp_path / "ranks"), iterations=4,
                                      val_interval=4),
                              script=FAILING_RANK,
                              environment={"HOW": how, "MINIFCN_COLLECTIVE_TIMEOUT": "3"})
    assert done.returncode != 0
    pid = re.search(r"rank 1 process (\d+) on", done.stdout)
    said = said.format(pid=pid and pid.group(1))
    assert said in done.stdout + done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    assert seconds < 60


def test_sigterm_stops_every_rank_at_one_step_and_resume_goes_on(tmp_path):
    # mpiexec passes SIGTERM to each rank; they agree at the next step's start on the
    # step to stop at, so rank 0's checkpoint holds the steps all of them took.
    import signal
    steps = dict(optimizer="sgd", lr=0.05, lr_policy="fixed", val_interval=10000)
    out = str(tmp_path / "ranks")
    env = {**os.environ, "PYTHONPATH": ROOT}
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "minifcn.cli", "train", "--distributed",
               *options(**TINY, out=out, batch_size=1, iterations=10000, **steps)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in job.stdout:
        if line.startswith("2 ranks:"):
            break
    time.sleep(2)
    job.send_signal(signal.SIGTERM)
    said, _ = job.communicate(timeout=60)
    assert job.returncode == 143, said
    stopped = load_checkpoint(os.path.join(out, "checkpoint.npz"))["iteration"]
    assert f"stopped by SIGTERM at iteration {stopped}" in said
    assert f"continue with `mpiexec -n 2 minifcn train --distributed --out {out} --resume`" in said
    done, _ = run_ranks(options(out=out, iterations=stopped + 2, progress=False) + ["--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_state(load_checkpoint(os.path.join(out, "checkpoint.npz")),
                      single(tmp_path / "one", batch_size=2, iterations=stopped + 2, **steps))


# ------------------------------------------------------------------ in this process
def test_dropout_draws_each_image_from_its_place_in_the_global_batch():
    # One process's batch of 3 against "ranks" holding images 0 and 1..2 of it: the same
    # masks, each image's the flat mask of image_seed(seed, its index) (reference kernel).
    import minifcn as mf
    from minifcn.functions import dropout
    from minifcn.functions.activation import image_seed, images_from
    from minifcn.reference.dropout import dropout_numpy, splitmix64
    x = numpy.random.default_rng(0).standard_normal((3, 4, 5, 6))
    mf.seed(9)
    whole = dropout(mf.Tensor(x), p=0.5).data
    seed = int(numpy.random.default_rng(9).integers(2**63))  # the draw dropout makes
    mf.seed(9)
    first = dropout(mf.Tensor(x[:1]), p=0.5).data
    mf.seed(9)
    with images_from(1):
        rest = dropout(mf.Tensor(x[1:]), p=0.5).data
    numpy.testing.assert_array_equal(numpy.concatenate([first, rest]), whole)
    threshold = int(numpy.ceil(0.5 * 2**53))
    for n in range(3):
        assert image_seed(seed, n) == int(splitmix64(numpy, seed, n + 1)[n]) >> 1
        numpy.testing.assert_array_equal(whole[n], dropout_numpy(x[n], image_seed(seed, n), threshold, 2.0))
    assert not numpy.array_equal(whole[0] == 0, whole[1] == 0)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("normalize", [True, False])
def test_a_world_of_one_rank_gives_the_loss_and_gradient_of_one_process(heads, normalize):
    # World.loss rebuilds the loss from unnormalized terms and global divisors; with one
    # rank it must be heads.loss exactly (float64), a multi-headed net's tuple included.
    import minifcn as mf
    from minifcn import distributed
    from minifcn import heads as heads_module
    mpiexec()
    rng = numpy.random.default_rng(heads)
    scores = [rng.standard_normal((2, 3, 5, 4)) for _ in range(heads)]
    labels = rng.integers(0, 3, (2, heads, 5, 4)) if heads > 1 else rng.integers(0, 3, (2, 5, 4))
    labels[labels == 1] = 255 if normalize else 1  # ignored pixels change the count
    world = distributed.World(TrainConfig(ranks=1))

    def loss_and_grads(function):
        tensors = [mf.Tensor(s, requires_grad=True) for s in scores]
        loss = function(tuple(tensors) if heads > 1 else tensors[0])
        loss.backward()
        return float(loss.data), [t.grad for t in tensors]

    got = loss_and_grads(lambda s: world.loss(s, labels, "cpu", normalize))
    want = loss_and_grads(lambda s: heads_module.loss(s, labels, normalize=normalize))
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for g, w in zip(got[1], want[1]):
        numpy.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_gradients_in_many_buckets_come_back_whole():
    from minifcn import distributed
    from minifcn.models import FCN8s
    from minifcn.optim import SGD
    mpiexec()
    net = FCN8s(n_class=3, widths=(4, 4, 4, 4, 4), fc_width=8)
    opt = SGD(net, lr=0.1)
    rng = numpy.random.default_rng(0)
    for _, param in opt.params:
        param.grad = rng.standard_normal(param.shape).astype(param.dtype)
    want = {name: param.grad.copy() for name, param in opt.params}
    world = distributed.World(TrainConfig(ranks=1))
    calls = []
    real_sum = world._sum
    world._sum = lambda array, what, op=None: calls.append(what) or real_sum(array, what, op)
    old, distributed.BUCKET_BYTES = distributed.BUCKET_BYTES, 1000
    try:
        total = world.sum_gradients(opt, numpy.float32(2.5))
    finally:
        distributed.BUCKET_BYTES = old
    assert float(total) == 2.5
    buckets = [what for what in calls if what.startswith("summing gradient bucket")]
    assert len(buckets) > 3 and buckets[-1].endswith(f"{len(buckets)} of {len(buckets)}")
    for name, param in opt.params:
        numpy.testing.assert_array_equal(param.grad, want[name])


def test_distributed_without_mpi4py_says_how_to_install_it(monkeypatch, capsys):
    from minifcn import distributed
    from minifcn.cli import main
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    with pytest.raises(distributed.DistributedError, match=r'pip install -e "\.\[mpi\]"'):
        distributed.mpi()
    assert main(["train", "--distributed", "--iterations", "1"]) == 1
    assert "minifcn train: error: --distributed needs mpi4py" in capsys.readouterr().err
