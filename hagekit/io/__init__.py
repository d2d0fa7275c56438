"""Small, shared file helpers: atomic writes and temporary names, feature h5 files (CLAM/TRIDENT),
gene lists, JSON objects, per-item locks, safetensors checks, HEST patch files, run folders."""
