from setuptools import find_packages, setup

setup(
    name="minifcn",
    version="0.1.0",
    description="A from-scratch engine (NumPy/CuPy, numba, CUDA) for Fully Convolutional Networks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # kernels/ (the CUDA sources) ships inside the package as minifcn/_kernels, so an
    # installed copy finds them too; a checkout reads kernels/ itself (minifcn/cuda.py).
    packages=find_packages(include=["minifcn", "minifcn.*"]) + ["minifcn._kernels"],
    package_dir={"minifcn._kernels": "kernels"},
    package_data={"minifcn._kernels": ["*.cu", "*.cuh"]},
    python_requires=">=3.9",
    # threadpoolctl: runtime.configure_process sizes BLAS's thread pool with it.
    install_requires=["numpy>=1.22", "scipy>=1.8", "pillow>=9", "numba>=0.57", "tqdm>=4.60",
                      "threadpoolctl>=3"],
    extras_require={
        # NVRTC, the compiler cupy.RawModule uses, so the tests check that kernels/*.cu
        # compile with it on machines with no GPU (tests/cuda/test_nvrtc.py).
        "test": ["pytest>=7", "hypothesis>=6", "ruff>=0.4",
                 "nvidia-cuda-nvrtc; sys_platform == 'linux' and platform_machine == 'x86_64'"],
        "cuda": ["cupy-cuda12x>=13"],
        # `minifcn train --distributed` under mpiexec (minifcn/distributed.py): mpi4py and
        # the MPICH wheel, which brings mpiexec and libmpi, so no system MPI is needed (its
        # wheels are for Linux x86-64 and aarch64; elsewhere install an MPI yourself).
        "mpi": ["mpi4py>=4", "mpich; sys_platform == 'linux' and platform_machine in 'x86_64 aarch64'"],
        "bench": ["torch"],
    },
    entry_points={"console_scripts": ["minifcn=minifcn.cli:main"]},
)
