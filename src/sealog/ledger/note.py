"""C2SP signed notes with Ed25519: keys in the Go sumdb/note text forms, signing, verifying."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ALG_ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


class NoteError(ValueError):
    """Raised for a malformed key or note."""


class SignatureError(ValueError):
    """Raised when no signature on a note verifies with the given keys."""


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A public key that checks notes signed under `name`."""

    name: str
    public: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.public)

    def text(self) -> str:
        """The verifier key as `name+hex8+base64(0x01||public)`."""
        return f"{self.name}+{self.id.hex()}+{base64.b64encode(ALG_ED25519 + self.public).decode()}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """The verifier a `name+hex8+base64` key stands for; raises NoteError."""
        try:
            name, hex_id, encoded = text.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise NoteError("a verifier key reads name+hex8+base64") from None
        _check_name(name)
        if len(raw) != 33 or raw[:1] != ALG_ED25519:
            raise NoteError("only Ed25519 verifier keys (0x01 || 32 bytes) are supported")
        verifier = cls(name, raw[1:])
        if verifier.id.hex() != hex_id.lower():
            raise NoteError("the verifier key's ID does not match its name and key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A private key that signs notes under `name`."""

    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key named name."""
        _check_name(name)
        private = Ed25519PrivateKey.generate()
        return cls(name, private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    @property
    def verifier(self) -> Verifier:
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        return Verifier(self.name, private.public_key().public_bytes(Encoding.Raw,
                                                                      PublicFormat.Raw))

    def text(self) -> str:
        """The signer key as `PRIVATE+KEY+name+hex8+base64(0x01||seed)`."""
        encoded = base64.b64encode(ALG_ED25519 + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.id.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        """The signer a PRIVATE+KEY+… text stands for; raises NoteError."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key reads PRIVATE+KEY+name+hex8+base64")
        _, _, name, hex_id, encoded = parts
        _check_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise NoteError("the signer key's key part is not base64") from None
        if len(raw) != 33 or raw[:1] != ALG_ED25519:
            raise NoteError("only Ed25519 signer keys (0x01 || 32-byte seed) are supported")
        signer = cls(name, raw[1:])
        if signer.verifier.id.hex() != hex_id.lower():
            raise NoteError("the signer key's ID does not match its name and key")
        return signer

    def sign(self, text: str) -> str:
        """The signed note: text (which must end in a newline), a blank line, the signature."""
        if not text.endswith("\n"):
            raise NoteError("a note's text must end with a newline")
        signature = Ed25519PrivateKey.from_private_bytes(self.seed).sign(text.encode())
        encoded = base64.b64encode(self.verifier.id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes


def split_note(note: str) -> tuple[str, list[Signature]]:
    """The text of a note and its signature lines; raises NoteError when malformed."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("a signed note is text, a blank line, and signature lines")
    text, block = note[: split + 1], note[split + 2 :]
    signatures = []
    for line in block[:-1].split("\n"):  # lines end in "\n", and only there
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"not a signature line: {line[:40]!r}")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise NoteError("a signature is not base64") from None
        if len(raw) < 5:
            raise NoteError("a signature is too short")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("the note has no signature")
    return text, signatures


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, Verifier]:
    """The text of note and the known key that signed it.

    Raises SignatureError when a known key's signature does not verify ("bad signature")
    or no signature is by a known key ("unknown key").
    """
    text, signatures = split_note(note)
    known = {(v.name, v.id): v for v in verifiers}
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), sig.signature):
            raise SignatureError(f"bad signature by key {sig.name}+{sig.key_id.hex()}")
        return text, verifier
    names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
    raise SignatureError(f"unknown key: the note is signed by {names}, none of them trusted")
