"""node_ext's benchmark suite (the protocol of BENCHMARKS.md): workloads W0-W5 timed side by side
against the pure-PyTorch reference solvers, torchdiffeq and torchode. Run ``node-ext bench``."""
