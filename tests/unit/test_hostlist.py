import random

import pytest

from k1prov.fanout.hostlist import expand_hosts, fold_hosts


def test_folds_padded_range_and_keeps_singletons():
    names = [f"worker{i:03d}" for i in range(1, 41)] + ["db1"]
    assert fold_hosts(names) == "db1,worker[001-040]"


def test_gaps_make_several_ranges_and_order_does_not_matter():
    names = ["n5", "n1", "n2", "n3", "n7", "n8", "n10"]
    assert fold_hosts(names) == "n[1-3,5,7-8,10]"


def test_padding_is_not_mixed_inside_a_range():
    # ClusterShell's NodeSet keeps each padding in a range of its own.
    assert fold_hosts(["n01", "n02", "n1", "n2"]) == "n[1-2,01-02]"
    assert sorted(expand_hosts(fold_hosts(["n01", "n02", "n1", "n2"]))) == ["n01", "n02", "n1", "n2"]


def test_range_crosses_a_power_of_ten_with_padding():
    assert fold_hosts(["a098", "a099", "a100", "a101"]) == "a[098-101]"
    assert fold_hosts(["a8", "a9", "a10"]) == "a[8-10]"


def test_last_number_varies_and_suffix_is_kept():
    names = ["rack1-node01.lab", "rack1-node02.lab", "rack2-node01.lab", "gw"]
    assert fold_hosts(names) == "gw,rack1-node[01-02].lab,rack2-node01.lab"


def test_duplicates_collapse():
    assert fold_hosts(["h1", "h1", "h2"]) == "h[1-2]"


def test_expand_examples():
    assert expand_hosts("db1,worker[001-003,010]") == ["db1", "worker001", "worker002",
                                                      "worker003", "worker010"]
    assert expand_hosts("r[1-2]n[01-02]") == ["r1n01", "r1n02", "r2n01", "r2n02"]
    with pytest.raises(ValueError):
        expand_hosts("x[5-3]")


def test_round_trip_on_random_sets():
    rnd = random.Random(7)
    for _ in range(200):
        names = {f"{rnd.choice(['a', 'node', 'w-'])}{rnd.randrange(0, 300):0{rnd.choice([1, 3])}d}"
                 for _ in range(rnd.randrange(1, 60))}
        names |= {"plain", "other"} if rnd.random() < 0.3 else set()
        assert sorted(expand_hosts(fold_hosts(names))) == sorted(names)
