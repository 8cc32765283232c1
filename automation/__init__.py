"""The application: the `automation` command and the composition of every process. The only package
that imports all the others (shared <- ai <- consumers; shared <- producers, scheduler; all <- automation)."""

import os

# One BLAS thread per process, set before anything imports NumPy: a deployment runs a process per stage
# (several per core), and OpenBLAS's own threads made each stage 1 batch's Gram matrices cost 1.5-2x
# the CPU for no gain in wall time (bench/README.md). An operator's own setting wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
