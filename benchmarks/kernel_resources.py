"""What the compiler says of each CUDA kernel, without a GPU: registers per thread,
stack frame and spills, from `ptxas -v` on the code cupy.RawModule builds
(minifcn.cuda.kernel_source and compile_options, per dtype: float32, float64 and bf16
where the file has a bf16 build) for Ampere and Hopper.

    python -m benchmarks.kernel_resources [--arch sm_80 sm_90] [--out DIR]

A stack frame or spills mean local memory, the first thing to rule out when a
memory-bound kernel misses its bandwidth (tests/cuda/test_nvcc.py requires none).
Registers bound how many threads an SM keeps resident: with cuda.THREADS_PER_BLOCK
threads a block, 65536 registers (allocated per thread in steps of 8) and at most 2048
threads an SM on both architectures, the table gives that bound as a fraction of 2048.

Writes benchmarks/results/kernel-resources-nvcc-<version>.json and .md.
"""
import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from minifcn import cuda

from . import common

ARCHITECTURES = ("sm_80", "sm_90")
REGISTERS_PER_SM, MAX_THREADS_PER_SM = 65536, 2048
_ENTRY = re.compile(r"Compiling entry function '(\w+)' for")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


def nvcc():
    """nvcc's path: on PATH or in the CUDA toolkit's usual place; None without one."""
    fallback = Path("/usr/local/cuda/bin/nvcc")
    return shutil.which("nvcc") or (str(fallback) if fallback.exists() else None)


def ptxas_report(filename, dtype, arch, compiler=None, index_bits=32):
    """{kernel: {"registers", "stack_bytes", "spill_stores", "spill_loads"}} for one
    kernels/*.cu file's build with `index_bits`-bit indices (32: the one FCN sizes run),
    as ptxas reports it (raises RuntimeError if it does not compile)."""
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / filename
        source.write_text(cuda.kernel_source(filename))
        result = subprocess.run([compiler or nvcc(), f"-arch={arch}", "-cubin", "-Xptxas", "-v",
                                 *cuda.compile_options(dtype, index_bits), str(source),
                                 "-o", str(source.with_suffix(".cubin"))],
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nvcc -arch={arch} -cubin failed on {filename} ({dtype}):\n{result.stderr}")
    report, kernel = {}, None
    for line in result.stderr.splitlines():
        if match := _ENTRY.search(line):
            kernel = report.setdefault(match.group(1), {})
        elif kernel is not None and (match := _FRAME.search(line)):
            kernel.update(zip(("stack_bytes", "spill_stores", "spill_loads"), map(int, match.groups())))
        elif kernel is not None and (match := _REGISTERS.search(line)):
            kernel["registers"] = int(match.group(1))
    return report


def resident_fraction(registers, threads_per_block=cuda.THREADS_PER_BLOCK):
    """Threads an SM can keep resident, as registers allow, over its 2048 maximum."""
    per_block = -(-registers // 8) * 8 * threads_per_block
    blocks = REGISTERS_PER_SM // per_block
    return min(blocks * threads_per_block, MAX_THREADS_PER_SM) / MAX_THREADS_PER_SM


def nvcc_version(compiler):
    text = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release ([\d.]+)", text)
    return match.group(1) if match else "unknown"


def markdown_report(report):
    rows = [[row["kernel"], row["file"], row["dtype"], row["arch"], str(row["registers"]),
             f"{resident_fraction(row['registers']):.0%}", str(row["stack_bytes"]),
             f"{row['spill_stores']} / {row['spill_loads']}"] for row in report["rows"]]
    headers = ["kernel", "file", "dtype", "arch", "registers", "resident threads (of 2048)",
               "stack bytes", "spill stores / loads (bytes)"]
    return "\n".join([
        f"# CUDA kernel resources, nvcc {report['nvcc']} ({report['date']})", "",
        f"From `ptxas -v`, no GPU involved; {report['threads_per_block']} threads a block.", "",
        common.markdown_table(headers, rows, "llll" + "r" * 4), ""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--out", default=str(common.RESULTS_DIR))
    args = parser.parse_args(argv)
    compiler = nvcc()
    if compiler is None:
        parser.exit(1, f"{parser.prog}: nvcc (the CUDA toolkit) is not installed\n")
    rows = []
    for filename in cuda.kernel_files():
        for dtype in cuda.storage_dtypes(filename):
            for arch in args.arch:
                for kernel, resources in sorted(ptxas_report(filename, dtype, arch, compiler).items()):
                    rows.append({"kernel": kernel, "file": filename, "dtype": dtype, "arch": arch,
                                 **resources})
    version = nvcc_version(compiler)
    report = {"date": datetime.date.today().isoformat(), "nvcc": version,
              "threads_per_block": cuda.THREADS_PER_BLOCK, "rows": rows}
    common.publish("kernel-resources", f"nvcc-{version}", report, markdown_report(report),
                   directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
