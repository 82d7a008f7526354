"""The versioned rule memory (Qdrant local mode in a per-test folder, or in memory).

Most tests use a small deterministic bag-of-words embedder so they run in milliseconds; the
retrieval-quality test uses the real packaged MiniLM embedder and is marked ``slow``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.memory.rules import (
    COLLECTION,
    QdrantUnavailable,
    RuleMemory,
    RuleMemoryError,
    RuleVersionNotFound,
    point_id,
)

from tests.conftest import HashEmbedder, closed_port_url

PED2_RULES = Path("/work/shared/data/anomalyruler/ped2/rules.txt")


def rules(*specs: str) -> list[Rule]:
    """'a:Text' is an anomaly rule, 'n:Text' a normal one, 'ao:'/'no:' object rules."""
    made = []
    for spec in specs:
        prefix, text = spec.split(":", 1)
        made.append(Rule(text=text, kind="anomaly" if prefix.startswith("a") else "normal",
                         category="object_environment" if prefix.endswith("o") else "human_activity"))
    return made


A = rules("a:Riding a bicycle", "a:Running", "ao:A car on the walkway", "n:Walking", "no:Trees along the path")
B = rules("a:Riding a bicycle", "a:Fighting", "ao:A car on the walkway", "n:Walking", "no:Trees along the path",
          "n:Sitting on a bench")


@pytest.fixture
def memory() -> Iterator[RuleMemory]:
    with RuleMemory(load_settings(), HashEmbedder()) as store:
        yield store


def test_default_storage_is_local_mode_in_the_data_dir_and_persists() -> None:
    settings = load_settings()
    with RuleMemory(settings, HashEmbedder()) as store:
        assert store.save(RuleSet(scene="ped2", rules=A)) == 1
    assert (settings.data_dir / "qdrant" / "collection" / COLLECTION).is_dir()
    with RuleMemory(load_settings(), HashEmbedder()) as reopened:
        latest = reopened.latest("ped2")
    assert latest is not None and latest.version == 1 and latest.rules == A


def test_qdrant_path_setting_moves_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_QDRANT__PATH", str(tmp_path / "elsewhere"))
    settings = load_settings()
    with RuleMemory(settings, HashEmbedder()) as store:
        store.save(RuleSet(scene="s", rules=A))
    assert (tmp_path / "elsewhere" / "collection" / COLLECTION).is_dir()
    assert not (settings.data_dir / "qdrant").exists()


def test_saving_different_rules_makes_new_versions_and_identical_rules_do_not(memory: RuleMemory) -> None:
    assert memory.save(RuleSet(scene="ped2", rules=A, source="induced"), note="first") == 1
    assert memory.save(RuleSet(scene="ped2", rules=A)) == 1  # identical: no new version
    assert memory.save(RuleSet(scene="ped2", rules=list(reversed(A)))) == 1  # order alone is no change
    assert memory.save(RuleSet(scene="ped2", rules=B), source="user") == 2
    assert memory.save(RuleSet(scene="ped2", rules=B)) == 2

    infos = memory.versions("ped2")
    assert [info.version for info in infos] == [1, 2]
    assert [(info.source, info.n_anomaly, info.n_normal, info.note) for info in infos] == [
        ("induced", 3, 2, "first"), ("user", 3, 3, "")]
    assert all(datetime.fromisoformat(info.created).tzinfo is not None for info in infos)

    latest = memory.latest("ped2")
    assert latest is not None
    assert (latest.scene, latest.version, latest.source, latest.rules) == ("ped2", 2, "user", B)
    first = memory.get("ped2", 1)
    assert (first.version, first.source, first.rules) == (1, "induced", A)
    # one point per rule per version, nothing duplicated by the identical saves
    assert memory.client.count(COLLECTION).count == len(A) + len(B)


def test_rule_order_is_kept(memory: RuleMemory) -> None:
    many = [Rule(text=f"Rule number {word}", kind="anomaly" if i % 3 else "normal")
            for i, word in enumerate("one two three four five six seven eight nine ten eleven twelve".split())]
    version = memory.save(RuleSet(scene="s", rules=many))
    assert [r.text for r in memory.get("s", version).rules] == [r.text for r in many]


def test_duplicate_rules_are_stored_once_and_empty_sets_are_refused(memory: RuleMemory) -> None:
    memory.save(RuleSet(scene="s", rules=A + A[:2]))
    assert memory.get("s", 1).rules == A
    with pytest.raises(RuleMemoryError, match="no rules"):
        memory.save(RuleSet(scene="s2", rules=[]))
    assert memory.versions("s2") == []


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id("ped2", 1, A[0].id) == point_id("ped2", 1, A[0].id)
    assert len({point_id("ped2", 1, A[0].id), point_id("ped2", 2, A[0].id),
                point_id("avenue", 1, A[0].id), point_id("ped2", 1, A[1].id)}) == 4


def test_missing_scene_or_version_names_what_exists(memory: RuleMemory) -> None:
    memory.save(RuleSet(scene="ped2", rules=A))
    memory.save(RuleSet(scene="ped2", rules=B))
    with pytest.raises(RuleVersionNotFound) as missing_version:
        memory.get("ped2", 5)
    message = str(missing_version.value)
    assert "'ped2'" in message and "v1, v2" in message and "\n" not in message
    with pytest.raises(RuleVersionNotFound) as missing_scene:
        memory.get("avenue", 1)
    assert "'avenue'" in str(missing_scene.value) and "ped2" in str(missing_scene.value)
    assert memory.latest("avenue") is None
    assert memory.versions("avenue") == []


def test_scenes_are_isolated(memory: RuleMemory) -> None:
    assert memory.scenes() == []
    memory.save(RuleSet(scene="ped2", rules=A))
    memory.save(RuleSet(scene="ped2", rules=B))
    memory.save(RuleSet(scene="avenue", rules=rules("a:Throwing a bag", "n:Walking")))
    assert memory.scenes() == ["avenue", "ped2"]
    assert [info.version for info in memory.versions("avenue")] == [1]
    assert [r.text for r in memory.get("avenue", 1).rules] == ["Throwing a bag", "Walking"]
    hits = memory.relevant("avenue", "a man riding a bicycle", k=10)
    assert {r.text for r in hits} == {"Throwing a bag", "Walking"}
    # the same rules saved under another scene start that scene at v1
    assert memory.save(RuleSet(scene="third", rules=A)) == 1


def test_diff_lists_added_and_removed_rules(memory: RuleMemory) -> None:
    memory.save(RuleSet(scene="ped2", rules=A))
    memory.save(RuleSet(scene="ped2", rules=B))
    change = memory.diff("ped2", 1, 2)
    assert [r.text for r in change.added] == ["Fighting", "Sitting on a bench"]
    assert [r.text for r in change.removed] == ["Running"]
    assert change.unchanged == 4
    assert change.lines() == ["- anomaly/human_activity: Running", "+ anomaly/human_activity: Fighting",
                              "+ normal/human_activity: Sitting on a bench"]
    back = memory.diff("ped2", 2, 1)
    assert [r.text for r in back.added] == ["Running"]
    assert memory.diff("ped2", 1, 1).empty
    with pytest.raises(RuleVersionNotFound):
        memory.diff("ped2", 1, 3)


def test_rollback_saves_the_old_rules_as_a_new_version(memory: RuleMemory) -> None:
    memory.save(RuleSet(scene="ped2", rules=A, source="induced"))
    memory.save(RuleSet(scene="ped2", rules=B, source="user"))
    assert memory.rollback("ped2", 1) == 3
    restored = memory.get("ped2", 3)
    assert restored.rules == A and restored.source == "induced"
    assert memory.versions("ped2")[-1].note == "rollback to v1"
    assert memory.get("ped2", 2).rules == B  # history kept
    assert memory.rollback("ped2", 3) == 3  # already the latest rules: nothing new
    with pytest.raises(RuleVersionNotFound):
        memory.rollback("ped2", 9)


def test_relevant_filters_by_version_and_kind(memory: RuleMemory) -> None:
    memory.save(RuleSet(scene="ped2", rules=A))
    memory.save(RuleSet(scene="ped2", rules=B))
    top = memory.relevant("ped2", "people fighting", k=1)
    assert [r.text for r in top] == ["Fighting"]
    old = memory.relevant("ped2", "people fighting", k=len(A) + 5, version=1)
    assert {r.text for r in old} == {r.text for r in A}
    anomalies = memory.relevant("ped2", "a car", k=10, kind="anomaly")
    assert anomalies and all(r.kind == "anomaly" for r in anomalies)
    assert anomalies[0].text == "A car on the walkway"
    assert len(memory.relevant("ped2", "walking", k=2)) == 2
    with pytest.raises(RuleVersionNotFound):
        memory.relevant("ped2", "x", version=7)
    with pytest.raises(RuleVersionNotFound):
        memory.relevant("nowhere", "x")


@pytest.mark.slow
def test_relevant_finds_the_most_similar_rule_with_the_real_embedder() -> None:
    candidates = rules("a:Riding a bicycle", "a:Fighting or pushing", "ao:Unattended bags",
                       "n:Walking on the sidewalk", "no:Trees along the street", "a:Throwing objects",
                       "n:Sitting on a bench")
    with RuleMemory.in_memory() as store:  # the packaged MiniLM embedder
        store.save(RuleSet(scene="ped2", rules=candidates))
        assert store.relevant("ped2", "a man riding a bike", k=1)[0].text == "Riding a bicycle"
        assert store.relevant("ped2", "two people punch each other", k=1)[0].text == "Fighting or pushing"
        assert store.relevant("ped2", "a backpack left on the ground", k=1,
                              kind="anomaly")[0].text == "Unattended bags"


def test_in_memory_store_writes_nothing_to_disk() -> None:
    settings = load_settings()
    with RuleMemory.in_memory(HashEmbedder()) as store:
        assert store.save(RuleSet(scene="s", rules=A)) == 1
    assert not (settings.data_dir / "qdrant").exists()


def test_ped2_rules_file_round_trips(memory: RuleMemory) -> None:
    original = RuleSet.parse(PED2_RULES.read_text(), scene="ped2")
    assert (len(original.anomaly), len(original.normal)) == (26, 19)
    version = memory.save(original)
    stored = memory.get("ped2", version)
    assert stored.rules == original.rules
    assert RuleSet.parse(stored.render(), scene="ped2").rules == original.rules


def test_an_unreachable_server_is_one_quick_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url().removesuffix("/v1")
    monkeypatch.setenv("QDRANT_URL", url)
    start = time.monotonic()
    with pytest.raises(QdrantUnavailable) as caught:
        RuleMemory(load_settings(), HashEmbedder())
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert isinstance(caught.value, SleuthError) and "\n" not in message
    assert f"cannot reach Qdrant at {url}" in message and "unset QDRANT_URL" in message


def test_server_mode_sends_the_api_key_and_reports_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    class Refuse(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            seen.append({name.lower(): value for name, value in self.headers.items()})
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("QDRANT_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
        monkeypatch.setenv("MY_QDRANT_KEY", "secret-key-123")
        monkeypatch.setenv("SLEUTH_QDRANT__API_KEY_ENV", "MY_QDRANT_KEY")
        with pytest.warns(UserWarning, match="insecure"), pytest.raises(QdrantUnavailable) as caught:
            RuleMemory(load_settings(), HashEmbedder())
    finally:
        httpd.shutdown()
    assert seen and seen[0].get("api-key") == "secret-key-123"
    message = str(caught.value)
    assert "403" in message and "$MY_QDRANT_KEY" in message and "secret-key-123" not in message


def test_two_rule_memories_in_one_process_share_the_local_folder() -> None:
    """Issue 18: a second open of the folder was refused; stores now open it on use (the other-process
    cases, waiting and the one-line error after the wait, are in tests/test_faults_qdrant.py)."""
    with RuleMemory(load_settings(), HashEmbedder()) as first, RuleMemory(load_settings(), HashEmbedder()) as second:
        first.save(RuleSet(scene="s", rules=A))
        assert second.latest_version("s") == 1
    with RuleMemory(load_settings(), HashEmbedder()) as reopened:
        assert reopened.latest_version("s") == 1


def test_an_embedder_of_another_dimension_is_refused() -> None:
    with RuleMemory(load_settings(), HashEmbedder(64)) as store:
        store.save(RuleSet(scene="s", rules=A))
    with RuleMemory(load_settings(), HashEmbedder(32)) as store:
        with pytest.raises(RuleMemoryError, match="holds 64-dimensional vectors but the embedder"):
            store.save(RuleSet(scene="s", rules=B))
        with pytest.raises(RuleMemoryError, match="holds 64-dimensional vectors"):
            store.relevant("s", "riding")
        assert store.get("s", 1).rules == A  # reading needs no embedder


def test_reads_do_not_load_the_embedder() -> None:
    embedder = HashEmbedder()
    with RuleMemory.in_memory(embedder) as store:
        assert store.scenes() == [] and store.versions("x") == [] and store.latest("x") is None
        assert embedder.calls == 0
        store.save(RuleSet(scene="x", rules=A))
        calls = embedder.calls
        store.latest("x"), store.versions("x"), store.diff("x", 1, 1)
        assert embedder.calls == calls


def test_a_closed_memory_says_so(memory: RuleMemory) -> None:
    memory.close()
    memory.close()  # idempotent
    with pytest.raises(RuleMemoryError, match="closed"):
        memory.scenes()
