"""The benchmarks B0 to B6 and the quick form; each module has one ``run`` function."""
