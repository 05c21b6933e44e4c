"""Benchmarks k1prov runs on the clusters it builds (`k1prov bench ...`)."""
from k1prov.bench.kmeans import KmeansOptions, Workload, run_kmeans, workload
from k1prov.bench.results import BenchResult, PhaseSummary, Skipped, Trial

__all__ = ["BenchResult", "KmeansOptions", "PhaseSummary", "Skipped", "Trial", "Workload",
           "run_kmeans", "workload"]
