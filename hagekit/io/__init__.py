"""Small, shared I/O helpers: atomic writes, feature h5 files, gene lists."""
