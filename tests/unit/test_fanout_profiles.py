import json
import multiprocessing

from k1prov.fanout.profiles import ProfileStore, endpoint_key


def test_round_trip_and_keys_are_independent(tmp_path):
    store = ProfileStore(tmp_path / "sub" / "profiles.json")
    assert store.get("ssh.run", "ssh") is None
    store.put("ssh.run", "ssh", 48)
    store.put("ironic.enroll", "http://127.0.0.1:6385", 16)
    assert store.get("ssh.run", "ssh") == 48
    assert store.get("ironic.enroll", "http://127.0.0.1:6385") == 16
    assert store.get("ironic.enroll", "other") is None
    data = json.loads((tmp_path / "sub" / "profiles.json").read_text())
    assert data["levels"]["ssh.run"]["ssh"]["level"] == 48
    assert data["levels"]["ssh.run"]["ssh"]["updated"] > 0


def test_corrupt_file_is_treated_as_empty(tmp_path):
    path = tmp_path / "profiles.json"
    path.write_text("{not json")
    store = ProfileStore(path)
    assert store.get("k", "e") is None
    store.put("k", "e", 3)
    assert store.get("k", "e") == 3


def test_credentials_in_an_endpoint_url_are_not_stored(tmp_path):
    assert endpoint_key("http://admin:s3cret@10.0.0.1:6385/v1") == "http://10.0.0.1:6385/v1"
    store = ProfileStore(tmp_path / "p.json")
    store.put("k", "http://admin:s3cret@10.0.0.1:6385", 5)
    assert "s3cret" not in (tmp_path / "p.json").read_text()
    assert store.get("k", "http://admin:s3cret@10.0.0.1:6385") == 5


def _writer(path, worker):
    store = ProfileStore(path)
    for i in range(20):
        store.put(f"kind{worker}", f"e{i}", i + 1)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "p.json"
    procs = [multiprocessing.Process(target=_writer, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    store = ProfileStore(path)
    assert all(store.get(f"kind{w}", f"e{i}") == i + 1 for w in range(4) for i in range(20))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("p.json.") and
            p.name != "p.json.lock"] == []
