"""The numeric engine (array API): compiled kernels, weights, networks, sweeps, analysis."""
