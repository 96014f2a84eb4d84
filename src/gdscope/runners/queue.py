"""One queue for the trials of several studies, and which study is complete when.

``gdscope run`` puts the trials of every study it runs into one queue for the runner, so that
no study waits for another's slowest trial (a per-study barrier left cores idle). A trial that
several studies expand to (same content hash) runs once: it is stored under the first study
that lists it (its *owner*) and linked to the others. A study is complete, and can be judged,
as soon as every distinct trial of it is stored.

Example:
    >>> queue = TrialQueue([QueueEntry("a", "a", [{"x": 1}, {"x": 2}], ["v1", "v2"], ["h1", "h2"]),
    ...                     QueueEntry("b", "b", [{"x": 2}], ["v2"], ["h2"])])
    >>> queue.todo(done=set())
    [('h1', 'v1'), ('h2', 'v2')]
    >>> queue.config("h2")
    {'x': 2}
    >>> queue.sharing("h2")
    [0, 1]
    >>> queue.stored("h2", failed=False)
    [1]
    >>> queue.stored("h1", failed=False)
    [0]

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["QueueEntry", "TrialQueue"]


class QueueEntry(NamedTuple):
    """One study's trials in a :class:`TrialQueue`; ``configs``, ``validated`` and ``hashes`` align.

    Attributes:
        study: the study (a name, or an object with a ``name``).
        scaled: the study at the run's scale (what its verdicts are judged from).
        configs: each trial's validated config in full, as JSON (what the store keeps).
        validated: each trial's validated config (what the runner trains).
        hashes: each trial's content hash.

    """

    study: Any
    scaled: Any
    configs: list[dict[str, Any]]
    validated: list[Any]
    hashes: list[str]


class TrialQueue:
    """The trials of several studies, one :class:`QueueEntry` each.

    Attributes:
        studies: the entries, as given.
        ran: per study, how many trials it owns that were stored by this run.
        failed: per study, how many of those failed.

    """

    def __init__(self, entries: Sequence[QueueEntry]) -> None:
        self.studies = list(entries)
        self.ran = [0] * len(self.studies)
        self.failed = [0] * len(self.studies)
        self._members: dict[str, list[int]] = {}
        self._owned: dict[str, tuple[int, int]] = {}  # hash → (owner study, position in it)
        self._waiting: list[set[str]] = []
        for index, entry in enumerate(self.studies):
            hashes = entry.hashes
            for position, digest in enumerate(hashes):
                members = self._members.setdefault(digest, [])
                if index not in members:
                    members.append(index)
                self._owned.setdefault(digest, (index, position))
            self._waiting.append(set(hashes))

    def name(self, index: int) -> str:
        """Return the name of study ``index``."""
        study = self.studies[index].study
        return study if isinstance(study, str) else study.name

    def config(self, digest: str) -> Any:
        """Return trial ``digest``'s config as its owner study wrote it (what the store keeps)."""
        index, position = self._owned[digest]
        return self.studies[index].configs[position]

    def validated(self, digest: str) -> Any:
        """Return trial ``digest``'s validated config in its owner study (what the runner trains)."""
        index, position = self._owned[digest]
        return self.studies[index].validated[position]

    def sharing(self, digest: str) -> list[int]:
        """Return the studies that expand to trial ``digest``, its owner first."""
        return list(self._members[digest])

    def todo(self, done: set[str]) -> list[tuple[str, Any]]:
        """Return ``(hash, validated config)`` of each distinct trial not in ``done``, in study order."""
        return [(digest, self.validated(digest)) for digest in self._members if digest not in done]

    def already_stored(self, done: set[str]) -> list[tuple[int, str]]:
        """Mark the trials in ``done`` as stored; return ``(study, hash)`` pairs to link."""
        pairs = []
        for index, waiting in enumerate(self._waiting):
            found = sorted(waiting & done)
            waiting.difference_update(found)
            pairs += [(index, digest) for digest in found]
        return pairs

    def complete(self) -> list[int]:
        """Return the studies none of whose trials is waiting."""
        return [index for index, waiting in enumerate(self._waiting) if not waiting]

    def stored(self, digest: str, *, failed: bool) -> list[int]:
        """Record that trial ``digest`` was stored; return the studies it completed."""
        members = self._members[digest]
        self.ran[members[0]] += 1
        self.failed[members[0]] += failed
        completed = []
        for index in members:
            waiting = self._waiting[index]
            if digest in waiting:
                waiting.discard(digest)
                if not waiting:
                    completed.append(index)
        return completed
