"""The Spark-Perf K-means test as one PySpark application (shipped by `k1prov bench kmeans`).

Self-contained on purpose: it runs on the cluster's driver host with nothing of k1prov
installed, so it imports only the standard library, pyspark and numpy.

    spark-submit kmeans_job.py --num-points 10000 --num-columns 100 --centers 20 \
        --iterations 20 --num-partitions 4 --seed 5 --trials 3

Spark-Perf's workload (mllib KMeansTest): random points around `centers` Gaussian
centres, generated on the executors (each partition from its own seed derived from
--seed, so a run is reproducible for a given partitioning), cached and counted before
the first trial so that no trial pays for generating the data. Each trial then
measures, on the driver's wall clock:
- training: KMeans.train(data, centers, maxIterations=iterations, seed=seed);
- test: the model's cost over the data (every point predicted against the centres).

Output: one JSON line per trial on stdout, {"event": "trial", ...}; one "data" line
after generation. Spark's own logging goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

# Spread of the generated centres and of the points around them (Spark-Perf's
# KMeansDataGenerator draws centres from N(0, scale) and points from N(centre, 1)).
CENTER_SCALE = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("num-points", "num-columns", "centers", "iterations", "num-partitions", "seed",
                 "trials"):
        parser.add_argument(f"--{name}", type=int, required=True)
    # Empty: the name spark-submit was given (--name; the bench makes one per job,
    # k1prov-bench-kmeans-<mode>-s<scale>): Mesos, the Spark UI and the logs tell them apart.
    parser.add_argument("--app-name", default="")
    args = parser.parse_args(argv)
    for name in ("num_points", "num_columns", "centers", "iterations", "num_partitions", "trials"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def generate(sc, args: argparse.Namespace):
    """An RDD of numpy vectors, made on the executors (only the centres travel)."""
    import numpy as np

    centres = np.random.RandomState(args.seed).normal(
        0.0, CENTER_SCALE, size=(args.centers, args.num_columns))
    centres_bc = sc.broadcast(centres)
    per_part, extra = divmod(args.num_points, args.num_partitions)
    seed = args.seed
    columns = args.num_columns

    def points(index, _):
        rng = np.random.RandomState(seed * 1000003 + index)
        count = per_part + (1 if index < extra else 0)
        chosen = rng.randint(0, len(centres_bc.value), size=count)
        block = centres_bc.value[chosen] + rng.normal(0.0, 1.0, size=(count, columns))
        return iter(list(block))

    return sc.parallelize(range(args.num_partitions), args.num_partitions).mapPartitionsWithIndex(points)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from pyspark import SparkConf, SparkContext
    from pyspark.mllib.clustering import KMeans

    # Named only when asked: a SparkConf made before the SparkContext cannot see the name
    # spark-submit was given (the JVM is not up yet), and whatever it sets wins over it.
    conf = SparkConf()
    if args.app_name:
        conf.setAppName(args.app_name)
    sc = SparkContext(conf=conf)
    try:
        started = time.perf_counter()
        data = generate(sc, args).cache()
        count = data.count()
        emit("data", points=count, columns=args.num_columns, partitions=data.getNumPartitions(),
             generate_s=round(time.perf_counter() - started, 4),
             default_parallelism=sc.defaultParallelism)
        for trial in range(args.trials):
            started = time.perf_counter()
            model = KMeans.train(data, args.centers, maxIterations=args.iterations, seed=args.seed)
            train_s = time.perf_counter() - started
            started = time.perf_counter()
            cost = model.computeCost(data)
            test_s = time.perf_counter() - started
            emit("trial", trial=trial + 1, train_s=round(train_s, 4), test_s=round(test_s, 4),
                 cost=float(cost), centers=len(model.clusterCenters))
    finally:
        sc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
