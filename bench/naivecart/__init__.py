"""A naive ORM cart, written only as the benchmark's point of comparison."""
