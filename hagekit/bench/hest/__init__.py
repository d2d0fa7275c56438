"""HEST-Benchmark (mahmoodlab/HEST ``src/hest/bench``): task folders, protocol, run, tables."""
