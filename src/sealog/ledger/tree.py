"""An org's Merkle tree as the store keeps it: appending leaves, roots and proofs."""

from __future__ import annotations

import base64

from sealog.ledger import merkle
from sealog.store.base import LogHead, Store


def append_leaves(
    head: LogHead, leaves: list[bytes]
) -> tuple[LogHead, list[tuple[int, int, bytes]]]:
    """The head after appending leaves, and the nodes to store: the leaves themselves
    (level 0) and every complete subtree they make. The tree keeps its own copy of each
    leaf hash, so proofs never depend on the event rows they are meant to check."""
    compact = merkle.CompactRange(head.size, head.compact_range)
    nodes: list[tuple[int, int, bytes]] = [
        (0, head.size + i, leaf) for i, leaf in enumerate(leaves)
    ]
    compact.extend(leaves, lambda level, index, h: nodes.append((level, index, h)))
    return LogHead(compact.size, tuple(compact.hashes), head.last_received_us), nodes


def head_root(head: LogHead) -> bytes:
    """The root of the tree a head describes."""
    return merkle.fold(head.compact_range)


def _reader(store: Store, org_id: str) -> merkle.NodeReader:
    return lambda wanted: store.read_tree_nodes(org_id, wanted)


def _check_size(store: Store, org_id: str, size: int) -> None:
    current = store.log_head(org_id).size
    if size > current:
        raise ValueError(f"tree_size {size} is larger than the log ({current} events)")


class Pruned(LookupError):
    """A proof that needs the part of the tree a purge removed; the message says what is
    still proven."""


def _pruned_before(store: Store, org_id: str) -> int:
    kept = store.get_retention(org_id)
    return 0 if kept is None else kept.pruned_before


def inclusion_proof(*, store: Store, org_id: str, index: int, size: int) -> list[bytes]:
    """The inclusion proof of event index in the tree of the first size events; raises
    Pruned for an event removed under the retention policy."""
    _check_size(store, org_id, size)
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    if index < (pruned := _pruned_before(store, org_id)):
        raise Pruned(f"the event at index {index} was removed under the retention policy "
                     f"(the log is retained from index {pruned})")
    return merkle.inclusion_proof(index, size, _reader(store, org_id))


def consistency_proof(*, store: Store, org_id: str, old: int, new: int) -> list[bytes]:
    """The consistency proof from the tree of size old to the tree of size new; raises
    Pruned from a size inside a purged prefix that no checkpoint was signed at."""
    _check_size(store, org_id, new)
    if not 1 <= old <= new:
        raise ValueError(f"'from' must be between 1 and 'to' ({new}); it is {old}")
    try:
        return merkle.consistency_proof(old, new, _reader(store, org_id))
    except LookupError:
        if old >= (pruned := _pruned_before(store, org_id)):
            raise
        raise Pruned(f"the events before index {pruned} were removed under the retention "
                     f"policy; from a size below it, consistency proofs are kept for the "
                     f"sizes of signed checkpoints alone, and {old} is not one") from None


def prefix_hashes(*, store: Store, org_id: str, size: int) -> list[bytes]:
    """The hashes of the perfect subtrees the first size leaves are made of, largest first:
    with them a verifier goes on from index size without the events before it."""
    _check_size(store, org_id, size)
    nodes = merkle.perfect_subtrees(0, size)
    found = store.read_tree_nodes(org_id, nodes)
    missing = [n for n in nodes if n not in found]
    if missing:
        raise LookupError(f"tree node (level, index) {missing[0]} is not stored")
    return [found[n] for n in nodes]


_BLOCK = 512


class ProofMaker:
    """Inclusion proofs for many events of one tree size, reading each stored node once.

    Neighbouring events share most of their proof, so a bounded cache of nodes makes a
    proof for every event of a large export cost a few reads each, in flat memory.
    """

    def __init__(self, *, store: Store, org_id: str, size: int, cache_nodes: int = 65536):
        _check_size(store, org_id, size)
        self.store = store
        self.org_id = org_id
        self.size = size
        self._cache: dict[tuple[int, int], bytes] = {}
        self._ranges: dict[tuple[int, int], bytes] = {}
        self._encoded: dict[tuple[int, int], str] = {}
        self._top_key = -1
        self._top: tuple[list[tuple[int, int]], int, int] = ([], 0, 0)
        self._limit = cache_nodes

    def _read(self, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        cache = self._cache
        missing = [n for n in wanted if n not in cache]
        if missing:
            if len(cache) + len(missing) * _BLOCK > self._limit:
                cache.clear()
                missing = wanted
            # Neighbouring events need neighbouring nodes: read each in a block of them.
            blocks = {(level, index // _BLOCK) for level, index in missing}
            for level, block in blocks:
                cache.update(self.store.read_tree_range(
                    self.org_id, level, block * _BLOCK, (block + 1) * _BLOCK))
        return {n: cache[n] for n in wanted if n in cache}

    def _path(self, index: int) -> list[tuple[int, int]]:
        # Above blocks of 64 leaves the path depends only on index >> 6: reuse it.
        key = index >> 6
        if self._top_key != key:
            top, lo, hi = merkle.descend(index, 0, self.size, 64)
            top.reverse()
            self._top = (top, lo, hi)
            self._top_key = key
        top, lo, hi = self._top
        bottom, _, _ = merkle.descend(index, lo, hi, 1)
        bottom.reverse()
        return bottom + top

    def inclusion_b64(self, index: int) -> list[str]:
        """The inclusion proof as base64 strings (as bundles write them)."""
        if not 0 <= index < self.size:
            raise ValueError(f"index {index} is not in a tree of size {self.size}")
        ranges = self._path(index)
        encoded = self._encoded
        missing = [r for r in ranges if r not in encoded]
        if missing:
            if len(encoded) > self._limit:
                encoded.clear()
                missing = ranges
            for r, h in zip(missing, self._hashes(missing), strict=True):
                encoded[r] = base64.b64encode(h).decode()
        return [encoded[r] for r in ranges]

    def inclusion(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise ValueError(f"index {index} is not in a tree of size {self.size}")
        return self._hashes(self._path(index))

    def _hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        known = self._ranges
        missing = [r for r in ranges if r not in known]
        if missing:
            if len(known) + len(missing) > self._limit:
                known.clear()
                missing = ranges
            # Most ranges of a path are perfect subtrees: one stored node each.
            perfect, other = [], []
            for lo, hi in missing:
                size = hi - lo
                if size & (size - 1) == 0 and lo % size == 0:
                    level = size.bit_length() - 1
                    perfect.append(((lo, hi), (level, lo >> level)))
                else:
                    other.append((lo, hi))
            if perfect:
                nodes = self._read([node for _, node in perfect])
                for r, node in perfect:
                    known[r] = nodes[node]
            if other:
                known.update(zip(other, merkle.hashes_of_ranges(other, self._read), strict=True))
        return [known[r] for r in ranges]
