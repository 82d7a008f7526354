"""Several processes on one local-mode Qdrant folder (the API beside ``sleuth rules``/``calibrate``).

Each test runs a real second process on the same data folder: a long-lived rule memory like the
API's (idle after one operation, or holding the folder for a long operation), or a plain
qdrant-client that knows nothing of Sleuth's own lock.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.config import Settings, load_settings
from sleuth.memory import qdrant
from sleuth.memory.gallery import GalleryLocked, GalleryStore
from sleuth.memory.rules import RuleMemory, RuleMemoryError, RuleMemoryLocked
from sleuth.memory.scenes import SceneProfile, SceneStore

from tests.conftest import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import json, sys, time
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.config import load_settings
from sleuth.memory.rules import RuleMemory
from tests.conftest import HashEmbedder

memory = RuleMemory(load_settings(), HashEmbedder())  # long-lived, like the API's runtime.memory
print("open", flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "save":
        scene, text = argument.split(" ", 1)
        rule = Rule(text=text, kind="anomaly", category="human_activity")
        print("saved", memory.save(RuleSet(scene=scene, rules=[rule])), flush=True)
    elif command == "scenes":
        print("scenes", json.dumps(memory.scenes()), flush=True)
    elif command == "hold":
        with memory.hold():
            print("held", flush=True)
            time.sleep(float(argument))
        print("released", flush=True)
    elif command == "quit":
        break
memory.close()
"""

PLAIN_CLIENT = """
import sys, time
from qdrant_client import QdrantClient
client = QdrantClient(path=sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
client.close()
print("released", flush=True)
time.sleep(60)
"""


class Other:
    """A second process on the same data folder (the environment, so the data dir, is inherited)."""

    def __init__(self, code: str, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                                        env=dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float = 90) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            pytest.fail(f"no '{prefix}' from the other process; stderr: {self.stderr()}")
        assert line.startswith(prefix), (line, self.stderr())
        return line[len(prefix):].strip()

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def others() -> Iterator[list[Other]]:
    started: list[Other] = []
    yield started
    for other in started:
        other.stop()


def start(others: list[Other], code: str, *args: str) -> Other:
    other = Other(code, *args)
    others.append(other)
    return other


def with_qdrant(settings: Settings, **values: float) -> Settings:
    """``settings`` with ``qdrant.lock_wait_s`` / ``qdrant.idle_release_s`` set."""
    return settings.model_copy(update={"qdrant": settings.qdrant.model_copy(update=values)})


def ruleset(scene: str, text: str) -> RuleSet:
    return RuleSet(scene=scene, rules=[Rule(text=text, kind="anomaly", category="human_activity")])


def folder_state(settings: Settings) -> qdrant._Folder:
    return qdrant._LOCAL[qdrant.local_folder(settings).resolve()]


def test_an_idle_long_lived_store_in_another_process_does_not_lock_the_folder(others: list[Other]) -> None:
    api = start(others, HOLDER)
    api.expect("open")
    api.send("save cam-a Riding a bicycle")
    assert api.expect("saved") == "1"
    settings = with_qdrant(load_settings(), lock_wait_s=10)
    began = time.monotonic()
    with RuleMemory(settings, HashEmbedder()) as memory:  # the other process is idle, its store still open
        assert memory.scenes() == ["cam-a"]  # its write is on disk
        assert memory.save(ruleset("cam-b", "Running")) == 1
        assert memory.save(ruleset("cam-a", "Fighting")) == 2
    assert time.monotonic() - began < 5  # at most the holder's poll, not the lock wait
    api.send("scenes")  # the long-lived store reads what this process wrote (no stale copy)
    assert json.loads(api.expect("scenes")) == ["cam-a", "cam-b"]
    api.send("save cam-a Throwing a bag")
    assert api.expect("saved") == "3"  # it sees v2 from here: the next version is 3
    with RuleMemory(settings, HashEmbedder()) as memory:
        assert [r.text for r in memory.get("cam-a", 3).rules] == ["Throwing a bag"]
    api.send("quit")
    assert api.process.wait(timeout=30) == 0, api.stderr()


def test_a_store_in_use_makes_the_other_process_wait_then_go_on(others: list[Other]) -> None:
    api = start(others, HOLDER)
    api.expect("open")
    api.send("save cam-a Riding a bicycle")
    api.expect("saved")
    api.send("hold 3")  # a long operation (a graph node reading and writing)
    api.expect("held")
    began = time.monotonic()
    with RuleMemory(with_qdrant(load_settings(), lock_wait_s=30), HashEmbedder()) as memory:
        assert memory.latest_version("cam-a") == 1
    waited = time.monotonic() - began
    assert 1.5 < waited < 20, waited  # waited for the operation, not for the whole lock wait
    api.expect("released")


def test_a_folder_in_use_past_the_lock_wait_is_an_honest_one_line_error(others: list[Other]) -> None:
    api = start(others, HOLDER)
    api.expect("open")
    api.send("hold 120")
    api.expect("held")
    settings = with_qdrant(load_settings(), lock_wait_s=1)
    began = time.monotonic()
    with pytest.raises(RuleMemoryLocked) as caught:
        RuleMemory(settings, HashEmbedder())
    assert 1 <= time.monotonic() - began < 10
    message = str(caught.value)
    folder = str(qdrant.local_folder(settings))
    assert "\n" not in message
    for fragment in ("rule memory", folder, "in use by another process for 1 s", "try again", "QDRANT_URL"):
        assert fragment in message, message
    with GalleryStore(settings) as store, pytest.raises(GalleryLocked, match="gallery store .* another process"):
        store.names()
    api.stop()  # the holder dies mid-operation: the system drops its locks with it
    with RuleMemory(settings, HashEmbedder()) as memory:
        assert memory.scenes() == []


def test_a_plain_qdrant_client_holding_the_folder_is_waited_for(others: list[Other]) -> None:
    settings = load_settings()
    folder = qdrant.local_folder(settings)
    with RuleMemory(settings, HashEmbedder()) as memory:  # creates the folder, then releases it
        memory.save(ruleset("cam-a", "Running"))
    plain = start(others, PLAIN_CLIENT, str(folder), "3")  # no .sleuth.lock: only Qdrant's own lock
    plain.expect("held")
    with pytest.raises(RuleMemoryLocked, match="another process"):
        RuleMemory(with_qdrant(settings, lock_wait_s=0.5), HashEmbedder())
    with RuleMemory(with_qdrant(settings, lock_wait_s=30), HashEmbedder()) as memory:
        assert memory.scenes() == ["cam-a"]
    plain.expect("released")


def test_a_long_lived_store_releases_the_folder_when_idle(others: list[Other]) -> None:
    settings = with_qdrant(load_settings(), idle_release_s=0.3)
    probe = ("from sleuth.config import load_settings\n"
             "from sleuth.memory.rules import RuleMemory\n"
             "s = load_settings()\n"
             "s = s.model_copy(update={'qdrant': s.qdrant.model_copy(update={'lock_wait_s': 0})})\n"
             "RuleMemory(s).close()\n"
             "print('opened', flush=True)\n")
    with RuleMemory(settings, HashEmbedder()) as memory:
        memory.save(ruleset("cam-a", "Running"))
        with memory.hold():  # a batch: open until it ends
            assert folder_state(settings).client is not None
            time.sleep(0.5)
            memory.scenes()
            assert folder_state(settings).client is not None
        time.sleep(1.0)
        assert folder_state(settings).client is None  # idle: released although the store is open
        start(others, probe).expect("opened")  # a process that does not wait at all gets the folder
        assert memory.latest_version("cam-a") == 1  # and this store opens it again on use


def test_stores_of_every_kind_share_the_folder_in_one_process() -> None:
    settings = load_settings()
    with RuleMemory(settings, HashEmbedder()) as memory, RuleMemory(settings, HashEmbedder()) as second, \
            GalleryStore(settings) as store:
        store.create("g", {"caption": (8, "text-model")})
        memory.save(ruleset("cam-a", "Running"))
        assert second.scenes() == ["cam-a"] and store.names() == ["g"]
        assert memory.client.collection_exists("sleuth_gallery_g")
        assert folder_state(settings).opens == 1  # one client for all, opened once while in use
    assert folder_state(settings).client is None  # closed: released at once, no idle wait
    with GalleryStore(settings) as store:
        assert store.names() == ["g"]
    with pytest.raises(RuleMemoryError, match="closed"):
        memory.scenes()


def test_concurrent_scene_profile_writes_never_show_a_partial_file() -> None:
    store = SceneStore(load_settings())
    errors: list[BaseException] = []

    def write(footage: str) -> None:
        try:
            for frames in range(60):
                store.save(SceneProfile(scene="gate", footage=[footage] * 50, frames=frames))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(f"/videos/{n}.mp4",)) for n in range(2)]
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        profile = store.load("gate")
        assert profile is None or len(profile.footage) == 50
    for writer in writers:
        writer.join()
    assert not errors, errors
    assert store.scenes() == ["gate"] and store.load("gate") is not None
    assert not list(store.folder.glob("*.partial")) and not list(store.folder.glob(".*.partial"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_does_not_reuse_or_unlock_the_parents_client() -> None:
    settings = load_settings()
    with RuleMemory(settings, HashEmbedder()) as memory:
        memory.save(ruleset("cam-a", "Running"))
        assert folder_state(settings).client is not None  # open, idle
        pid = os.fork()
        if pid == 0:  # the child: it starts with no open folder of its own
            os._exit(0 if not qdrant._LOCAL else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert memory.latest_version("cam-a") == 1  # the parent's client still works
