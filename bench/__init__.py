"""Benchmarks of the cart memory image and the naive ORM cart they are compared with."""
