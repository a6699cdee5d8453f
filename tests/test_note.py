"""Signed notes against the published Go sumdb/note vector, and their failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealog.ledger.note import NoteError, SignatureError, Signer, Verifier, open_note

VECTOR = Path(__file__).resolve().parent / "data" / "vectors" / "signed-note"


def read(name: str) -> str:
    return (VECTOR / name).read_text()


def test_signing_reproduces_the_vector_byte_for_byte():
    signer = Signer.parse(read("peterneumann.skey"))
    note = read("peterneumann.note")
    text = note[: note.rfind("\n\n") + 1]
    assert signer.sign(text) == note
    assert signer.text() == read("peterneumann.skey").strip()
    assert signer.verifier.text() == read("peterneumann.vkey").strip()


def test_the_vector_verifies_with_its_public_key():
    verifier = Verifier.parse(read("peterneumann.vkey"))
    text, by = open_note(read("peterneumann.note"), [verifier])
    assert text.startswith("If you think cryptography") and by == verifier


def test_altered_text_is_a_bad_signature():
    verifier = Verifier.parse(read("peterneumann.vkey"))
    note = read("peterneumann.note").replace("answer", "answers")
    with pytest.raises(SignatureError, match="bad signature"):
        open_note(note, [verifier])


def test_another_key_is_unknown():
    stranger = Signer.generate("PeterNeumann")
    note = stranger.sign("hello\n")
    with pytest.raises(SignatureError, match="unknown key"):
        open_note(note, [Verifier.parse(read("peterneumann.vkey"))])


@pytest.mark.parametrize("bad", [
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+AhpcQ==",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "nonsense",
])
def test_malformed_verifier_keys_are_refused(bad):
    with pytest.raises(NoteError):
        Verifier.parse(bad)


def test_malformed_notes_are_refused():
    verifier = Verifier.parse(read("peterneumann.vkey"))
    with pytest.raises(NoteError):
        open_note("no blank line\n", [verifier])
    with pytest.raises(NoteError):
        open_note("text\n\nnot a signature\n", [verifier])
    with pytest.raises(NoteError):
        Signer.generate("x").sign("no final newline")
