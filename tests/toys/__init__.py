"""Builders of tiny inputs shared by the tests (importable because tests/conftest.py puts tests/
on sys.path): toy ST datasets, raw files in published layouts, HEST tasks, patches, AB-MIL bags.

Plain modules, not test files: pytest collects nothing here, and a test imports them by name
(``from toys import hage_toy as toy``) in any order and from any folder.
"""
