"""Merkle hashing and proofs against the published RFC 6962 vectors, and property tests."""

from __future__ import annotations

import base64
import bisect
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealog.ledger import merkle

VECTORS = Path(__file__).resolve().parent / "data" / "vectors" / "rfc6962"
LEAF_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
               "606162636465666768696a6b6c6d6e6f"]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def proof_of(vector: dict) -> list[bytes]:
    return [b64(p) for p in vector["proof"] or []]


def vectors(kind: str) -> list[tuple[str, dict]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, f"no vectors under {VECTORS / kind}"
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def outcome(check) -> bool:
    try:
        check()
    except merkle.ProofError:
        return True
    return False


def test_roots_of_the_first_n_leaves():
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in LEAF_INPUTS]
    for n, root in enumerate(ROOTS):
        assert merkle.root_of_leaves(leaves[:n]).hex() == root
        compact = merkle.CompactRange()
        compact.extend(leaves[:n])
        assert compact.root().hex() == root


@pytest.mark.parametrize("name, v", vectors("inclusion"))
def test_inclusion_vectors(name, v):
    failed = outcome(lambda: merkle.verify_inclusion(
        b64(v["leafHash"]), v["leafIdx"], v["treeSize"], proof_of(v), b64(v["root"])))
    assert failed == v["wantErr"], v["desc"]


@pytest.mark.parametrize("name, v", vectors("consistency"))
def test_consistency_vectors(name, v):
    failed = outcome(lambda: merkle.verify_consistency(
        v["size1"], v["size2"], proof_of(v), b64(v["root1"]), b64(v["root2"])))
    assert failed == v["wantErr"], v["desc"]


@pytest.mark.parametrize("name, v", vectors("subtreeinclusion"))
def test_subtree_inclusion_vectors(name, v):
    start, end = v.get("start", 0), v.get("end", v.get("treeSize"))
    failed = outcome(lambda: merkle.verify_subtree_inclusion(
        b64(v["leafHash"]), v["leafIdx"], start, end, proof_of(v), b64(v["root"])))
    assert failed == v["wantErr"], v["desc"]


@pytest.mark.parametrize("name, v", vectors("subtreeconsistency"))
def test_subtree_consistency_vectors(name, v):
    failed = outcome(lambda: merkle.verify_subtree_consistency(
        v["start"], v["end"], v["size"], proof_of(v), b64(v["root1"]), b64(v["root2"])))
    assert failed == v["wantErr"], v["desc"]


def _tree(n: int) -> tuple[list[bytes], merkle.NodeReader]:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    nodes: dict[tuple[int, int], bytes] = {(0, i): h for i, h in enumerate(leaves)}
    compact = merkle.CompactRange()
    compact.extend(leaves, lambda level, index, h: nodes.__setitem__((level, index), h))

    def read(wanted):
        return {k: nodes[k] for k in wanted if k in nodes}

    return leaves, read


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_inclusion_proof_verifies_and_every_flip_fails(n, data):
    leaves, read = _tree(n)
    root = merkle.root_from_nodes(n, read)
    assert root == merkle.root_of_leaves(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(index, n, read)
    merkle.verify_inclusion(leaves[index], index, n, proof, root)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(_flip(leaves[index], bit), index, n, proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaves[index], index, n, proof, _flip(root, bit))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[which] = _flip(bad[which], bit)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaves[index], index, n, bad, root)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 300), st.data())
def test_every_consistency_proof_verifies_and_every_flip_fails(n, data):
    leaves, read = _tree(n)
    old = data.draw(st.integers(1, n - 1))
    old_root = merkle.root_of_leaves(leaves[:old])
    new_root = merkle.root_from_nodes(n, read)
    proof = merkle.consistency_proof(old, n, read)
    merkle.verify_consistency(old, n, proof, old_root, new_root)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(old, n, proof, _flip(old_root, bit), new_root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(old, n, proof, old_root, _flip(new_root, bit))
    which = data.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[which] = _flip(bad[which], bit)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(old, n, bad, old_root, new_root)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_proof_maker_paths_equal_the_definition(n, data):
    from sealog.ledger.tree import ProofMaker

    maker = ProofMaker.__new__(ProofMaker)
    maker.size, maker._top_key, maker._top = n, -1, ([], 0, 0)
    for index in sorted(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=40))):
        assert maker._path(index) == merkle.inclusion_ranges(index, n)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.data())
def test_pruning_keeps_exactly_what_proofs_of_signed_sizes_and_retained_leaves_read(n, data):
    leaves, full = _tree(n)
    nodes = full(list(_every_node(n)))
    signed = sorted(data.draw(st.sets(st.integers(1, n), max_size=8)))

    def first_signed(at_least):
        i = bisect.bisect_left(signed, at_least)
        return signed[i] if i < len(signed) else None

    # The prefix moves forward in steps, as purge transactions move it.
    steps = sorted(data.draw(st.sets(st.integers(1, n), min_size=1, max_size=4)))
    pruned = 0
    for step in steps:
        for level, start, stop in merkle.prunable_ranges(pruned, step, first_signed):
            for index in range(start, stop):
                nodes.pop((level, index), None)
        pruned = step

    read_set: set[tuple[int, int]] = set()

    def read(wanted):
        read_set.update(wanted)
        return {k: nodes[k] for k in wanted if k in nodes}

    def root(size):
        return merkle.root_of_leaves(leaves[:size])

    # What must still work: every consistency proof from a signed size, to a later signed
    # size or to any size of the retained part; every retained leaf's inclusion proof; and
    # the perfect subtrees the pruned prefix is made of (GET /log/pruned).
    targets = sorted(set(signed) | set(range(pruned, n + 1)) - {0})
    for old in signed:
        for size in (s for s in targets if s > old):
            proof = merkle.consistency_proof(old, size, read)
            merkle.verify_consistency(old, size, proof, root(old), root(size))
    for index in range(pruned, n):
        for size in {index + 1, n, data.draw(st.integers(index + 1, n))}:
            proof = merkle.inclusion_proof(index, size, read)
            merkle.verify_inclusion(leaves[index], index, size, proof, root(size))
    prefix = merkle.perfect_subtrees(0, pruned)
    read(prefix)
    assert merkle.fold([nodes[k] for k in prefix]) == root(pruned) if pruned else True

    # And nothing more of the pruned prefix is kept than those read.
    inside = {(level, index) for level, index in nodes if (index + 1) << level <= pruned}
    assert inside <= read_set, sorted(inside - read_set)[:5]


def _every_node(n: int):
    level = 0
    while n >> level:
        yield from ((level, index) for index in range(n >> level))
        level += 1
