"""Tests of minifcn.functions, one file per op family; reference.py holds loop references."""
