"""Tests of minifcn.nn: Module, Parameter, the layers and the fillers."""
