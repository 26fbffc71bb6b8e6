"""Benchmark evaluation: suites (synthetic10, paper10), their datasets and the zero-shot and retrieval metrics."""
