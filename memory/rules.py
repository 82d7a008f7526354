"""Versioned rule memory in Qdrant: every rule of every version of every scene is one point.

A scene (camera) has versions 1, 2, ...; each :meth:`RuleMemory.save` writes a new version unless
the rules equal the latest version's, so rerunning induction on the same footage does not pile
up duplicates. Old versions stay readable (:meth:`~RuleMemory.get`, :meth:`~RuleMemory.diff`) and
can be restored as a new version (:meth:`~RuleMemory.rollback`). Rules are embedded with the text
embedder so :meth:`~RuleMemory.relevant` can pick the rules of a long rule set that matter for one
caption.

Storage is Qdrant local mode in ``settings.qdrant.path`` (default ``<data dir>/qdrant``), or the
server at ``settings.qdrant.url`` (``QDRANT_URL``) with the key from the variable named by
``settings.qdrant.api_key_env`` (see :mod:`sleuth.memory.qdrant`, shared with the galleries).
Local mode opens the folder per operation and releases it when idle, so several processes take
turns on it; one that finds it in use waits up to ``qdrant.lock_wait_s`` for it, then gets a
:class:`RuleMemoryLocked` error.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field
from qdrant_client import QdrantClient, models
from sleuth.agents.schemas import Kind, Rule, RuleSet, Source, unique_rules
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.memory import qdrant
from sleuth.memory.qdrant import QdrantConnection

COLLECTION = "sleuth_rules"
_NAMESPACE = uuid.UUID("6f1c1f0e-5a0b-4c7e-9f44-2b7d1c3e9a10")
_PAGE = 1024


class RuleMemoryError(SleuthError):
    """The rule memory cannot do what was asked (missing version, bad input, storage problem)."""


class QdrantUnavailable(RuleMemoryError, qdrant.QdrantUnavailable):
    """The Qdrant server in ``QDRANT_URL`` cannot be reached or refused the request."""


class RuleMemoryLocked(RuleMemoryError, qdrant.QdrantLocked):
    """The local-mode folder stayed in use by another process for longer than ``qdrant.lock_wait_s``."""


class RuleVersionNotFound(RuleMemoryError):
    """The scene, or the version of the scene, is not in the rule memory."""


_ERRORS = qdrant.ErrorKinds(what="rule memory", base=RuleMemoryError, unavailable=QdrantUnavailable,
                            locked=RuleMemoryLocked)


class Embedder(Protocol):
    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


class VersionInfo(BaseModel):
    """One stored version of one scene's rules."""

    version: int
    source: Source
    created: str = Field(description="When the version was saved (ISO 8601, UTC).")
    n_normal: int
    n_anomaly: int
    note: str = ""


class RuleDiff(BaseModel):
    """What changed from version ``a`` to version ``b`` of a scene (by rule id)."""

    scene: str
    a: int
    b: int
    added: list[Rule] = Field(default_factory=list, description="In b, not in a.")
    removed: list[Rule] = Field(default_factory=list, description="In a, not in b.")
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed

    def lines(self) -> list[str]:
        """``+ kind/category: text`` and ``- kind/category: text`` lines, removals first."""
        return ([f"- {r.kind}/{r.category}: {r.text}" for r in self.removed]
                + [f"+ {r.kind}/{r.category}: {r.text}" for r in self.added])


def point_id(scene: str, version: int, rule_id: str) -> str:
    """Deterministic point id: saving the same rule of the same version twice overwrites it."""
    return str(uuid.uuid5(_NAMESPACE, f"{scene}/{version}/{rule_id}"))


class RuleMemory(qdrant.QdrantStore):
    """Versioned rule sets per scene in one Qdrant collection.

    ``RuleMemory()`` reads the settings like the CLI; ``RuleMemory.in_memory(embedder)`` keeps
    everything in the process (tests). A long-lived one (the API's) holds the local folder only
    while it reads or writes (:meth:`hold` for a batch); close it (or use ``with``) when done.
    """

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None, *,
                 client: QdrantClient | None = None, collection: str = COLLECTION,
                 timeout_s: int = 5) -> None:
        self.settings = settings or load_settings()
        self.collection = collection
        self._embedder = embedder
        self._checked_dimension: int | None = None
        self._connection = QdrantConnection(self.settings, owner="rules", errors=_ERRORS, client=client,
                                            timeout_s=timeout_s)
        try:
            with self._guard():
                self._exists = self.client.collection_exists(self.collection)
        except BaseException:
            self.close()
            raise

    @classmethod
    def in_memory(cls, embedder: Embedder | None = None, settings: Settings | None = None) -> RuleMemory:
        """A rule memory that lives in this process only (nothing on disk)."""
        return cls(settings or Settings(), embedder, client=QdrantClient(":memory:"))

    # -- connection -----------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn transport and server errors into one-line :class:`QdrantUnavailable` errors."""
        with self._connection.guard():
            yield

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from sleuth.tools.embedder import TextEmbedder

            self._embedder = TextEmbedder(self.settings.embedder)
        return self._embedder

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder(list(texts)), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise RuleMemoryError(f"the embedder returned shape {vectors.shape} for {len(texts)} texts")
        return vectors

    def _ensure_collection(self, dimension: int) -> None:
        if self._checked_dimension == dimension:
            return
        exists = self._has_collection()
        with self._guard():
            if not exists:
                self.client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE))
                with warnings.catch_warnings():  # local mode: "payload indexes have no effect"
                    warnings.simplefilter("ignore")
                    for field, schema in (("scene", models.PayloadSchemaType.KEYWORD),
                                          ("kind", models.PayloadSchemaType.KEYWORD),
                                          ("version", models.PayloadSchemaType.INTEGER)):
                        self.client.create_payload_index(self.collection, field, field_schema=schema)
                self._exists = True
            else:
                stored = self.client.get_collection(self.collection).config.params.vectors
                size = stored.size if isinstance(stored, models.VectorParams) else None
                if size != dimension:
                    raise RuleMemoryError(
                        f"the rule memory at {self.location} holds {size}-dimensional vectors but the "
                        f"embedder '{self.settings.embedder.model}' gives {dimension}",
                        hint="use the embedder the rules were stored with, or another qdrant.path")
        self._checked_dimension = dimension

    # -- reading --------------------------------------------------------------------------------

    def _has_collection(self) -> bool:
        if not self._exists:  # another process may have created it since
            with self._guard():
                self._exists = self.client.collection_exists(self.collection)
        return self._exists

    def _scroll(self, conditions: Sequence[models.FieldCondition],
                payload: bool | list[str] = True) -> list[dict[str, Any]]:
        if not self._has_collection():
            return []
        flt = models.Filter(must=list(conditions)) if conditions else None
        records: list[dict[str, Any]] = []
        offset: Any = None
        with self._guard():
            while True:
                page, offset = self.client.scroll(self.collection, scroll_filter=flt, limit=_PAGE,
                                                  offset=offset, with_payload=payload, with_vectors=False)
                records.extend(record.payload or {} for record in page)
                if offset is None:
                    return records

    def scenes(self) -> list[str]:
        """Every scene with at least one stored version, sorted."""
        return sorted({p["scene"] for p in self._scroll([], payload=["scene"]) if "scene" in p})

    def versions(self, scene: str) -> list[VersionInfo]:
        """The stored versions of ``scene``, oldest first (empty when the scene is unknown)."""
        grouped: dict[int, list[dict[str, Any]]] = {}
        for payload in self._scroll([_match("scene", scene)],
                                    payload=["version", "source", "created", "note", "kind"]):
            grouped.setdefault(int(payload["version"]), []).append(payload)
        infos = []
        for version in sorted(grouped):
            points = grouped[version]
            first = points[0]
            infos.append(VersionInfo(version=version, source=first.get("source", "file"),
                                     created=first.get("created", ""), note=first.get("note", ""),
                                     n_normal=sum(p.get("kind") == "normal" for p in points),
                                     n_anomaly=sum(p.get("kind") == "anomaly" for p in points)))
        return infos

    def latest_version(self, scene: str) -> int:
        """The newest version number of ``scene`` (0 when nothing is stored)."""
        infos = self.versions(scene)
        return infos[-1].version if infos else 0

    def get(self, scene: str, version: int) -> RuleSet:
        """Version ``version`` of ``scene``'s rules, in their stored order."""
        points = self._scroll([_match("scene", scene), _match("version", version)])
        if not points:
            raise self.not_found(scene, version)
        points.sort(key=lambda p: p.get("order", 0))
        rules = [Rule(text=p["text"], kind=p["kind"], category=p["category"]) for p in points]
        return RuleSet(scene=scene, rules=rules, version=version, source=points[0].get("source", "file"))

    def latest(self, scene: str) -> RuleSet | None:
        """The newest version of ``scene``'s rules, or None when the scene has none."""
        version = self.latest_version(scene)
        return self.get(scene, version) if version else None

    def not_found(self, scene: str, version: int | None = None) -> RuleVersionNotFound:
        """The error for a missing scene (version None) or version, naming what is stored."""
        infos = self.versions(scene)
        if not infos:
            known = ", ".join(self.scenes()) or "none"
            return RuleVersionNotFound(f"no rules stored for scene '{scene}' (stored scenes: {known})",
                                       hint="import or induce rules for it first (sleuth rules import/induce)")
        listed = ", ".join(f"v{info.version}" for info in infos)
        return RuleVersionNotFound(f"scene '{scene}' has no version {version} (versions: {listed})",
                                   hint="pick one of those (sleuth rules list --scene " + scene + ")")

    # -- writing --------------------------------------------------------------------------------

    def save(self, ruleset: RuleSet, *, source: Source | None = None, note: str = "") -> int:
        """Store ``ruleset`` as the next version of its scene and return the version number.

        When the rules (compared by :attr:`Rule.id`, order ignored) equal the latest version's,
        nothing is written and the latest version number is returned.
        """
        scene = ruleset.scene.strip()
        if not scene:
            raise RuleMemoryError("a rule set needs a scene name to be saved")
        rules = unique_rules(ruleset.rules)
        if not rules:
            raise RuleMemoryError(f"the rule set for scene '{scene}' has no rules: nothing to save")
        ids = {r.id for r in rules}
        latest = self.latest(scene)
        if latest is not None and {r.id for r in latest.rules} == ids:
            return latest.version
        vectors = self._embed([r.text for r in rules])  # outside the hold: other processes may go on
        with self.hold():  # read the latest version again and write the next one with no process between
            latest = self.latest(scene)
            if latest is not None and {r.id for r in latest.rules} == ids:
                return latest.version
            version = (latest.version if latest else 0) + 1
            self._ensure_collection(int(vectors.shape[1]))
            created = datetime.now(UTC).isoformat(timespec="seconds")
            points = [
                models.PointStruct(
                    id=point_id(scene, version, rule.id),
                    vector=vector.tolist(),
                    payload={"scene": scene, "kind": rule.kind, "category": rule.category,
                             "source": source or ruleset.source, "version": version, "created": created,
                             "text": rule.text, "rule_id": rule.id, "note": note, "order": order})
                for order, (rule, vector) in enumerate(zip(rules, vectors, strict=True))
            ]
            with self._guard():
                self.client.upsert(self.collection, points=points, wait=True)
        return version

    def rollback(self, scene: str, version: int) -> int:
        """Save the rules of ``version`` again as the newest version (note ``rollback to vN``)."""
        old = self.get(scene, version)
        return self.save(old, source=old.source, note=f"rollback to v{version}")

    def diff(self, scene: str, a: int, b: int) -> RuleDiff:
        """Rules added and removed going from version ``a`` to version ``b``."""
        old, new = self.get(scene, a), self.get(scene, b)
        old_ids, new_ids = {r.id for r in old.rules}, {r.id for r in new.rules}
        return RuleDiff(scene=scene, a=a, b=b,
                        added=[r for r in new.rules if r.id not in old_ids],
                        removed=[r for r in old.rules if r.id not in new_ids],
                        unchanged=len(old_ids & new_ids))

    # -- search ---------------------------------------------------------------------------------

    def relevant(self, scene: str, text: str, k: int = 8, *, version: int | None = None,
                 kind: Kind | None = None) -> list[Rule]:
        """The ``k`` rules of one version of ``scene`` (default: latest) most similar to ``text``."""
        stored = [info.version for info in self.versions(scene)]
        if not stored or (version is not None and version not in stored):
            raise self.not_found(scene, version)
        version = version or stored[-1]
        conditions: list[models.Condition] = [_match("scene", scene), _match("version", version)]
        if kind is not None:
            conditions.append(_match("kind", kind))
        query = self._embed([text])[0]
        self._ensure_collection(int(query.shape[0]))  # a different embedder: one clear error
        with self._guard():
            hits = self.client.query_points(self.collection, query=query.tolist(),
                                            query_filter=models.Filter(must=conditions), limit=k,
                                            with_payload=True).points
        return [Rule(text=h.payload["text"], kind=h.payload["kind"], category=h.payload["category"])
                for h in hits if h.payload]


def _match(key: str, value: str | int) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))
