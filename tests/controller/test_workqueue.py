import threading

from controller.workqueue import WorkQueue


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_key_added_twice_is_handed_out_once():
    q = WorkQueue()
    q.add("a")
    q.add("a")
    assert q.get(timeout=0) == "a"
    assert q.get(timeout=0) is None


def test_a_key_added_while_being_processed_runs_again_after_done():
    q = WorkQueue()
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")
    assert q.get(timeout=0) is None, "never two workers on one key"
    q.done("a")
    assert q.get(timeout=0) == "a"


def test_delayed_keys_come_out_when_due_and_the_earliest_request_wins():
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 5)
    q.add_after("a", 8)
    assert q.get(timeout=0) is None
    clock.now = 5
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.now = 10
    assert q.get(timeout=0) is None, "the later requests were folded into the earlier one"


def test_close_releases_waiting_workers():
    q = WorkQueue()
    got = []
    worker = threading.Thread(target=lambda: got.append(q.get()))
    worker.start()
    q.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and got == [None]


def test_workers_share_the_keys_without_overlap():
    q = WorkQueue()
    for i in range(100):
        q.add(f"k{i}")
    seen, lock = [], threading.Lock()

    def work():
        while (key := q.get(timeout=0.2)) is not None:
            with lock:
                seen.append(key)
            q.done(key)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(f"k{i}" for i in range(100))
