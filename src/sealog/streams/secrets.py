"""The secrets of streams (webhook signing secrets, custom header values), sealed with a
key kept like the signing key (a file of the data folder, mode 0600, the same on every
machine): AES-256-GCM, each sealed value bound to its org and stream."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class SecretsError(ValueError):
    """Sealed secrets that this key cannot open: another deployment's key, or altered."""


class SecretBox:
    """Seals and opens the secrets of streams with one key."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise ValueError(f"a streams key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def load(cls, path: Path) -> SecretBox:
        """The key in path (base64), made there (mode 0600) on first use."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
        try:
            return cls(base64.b64decode(path.read_text().strip(), validate=True))
        except ValueError as exc:
            raise ValueError(f"{path} does not hold a streams key: {exc}") from None

    def seal(self, org_id: str, stream_id: str, secrets: dict[str, Any]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, orjson.dumps(secrets),
                                          _bound_to(org_id, stream_id))

    def open(self, org_id: str, stream_id: str, sealed: bytes) -> dict[str, Any]:
        try:
            plain = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                       _bound_to(org_id, stream_id))
        except InvalidTag:
            raise SecretsError(
                f"the secrets of stream {stream_id} do not open with this deployment's "
                "streams key (SEALOG_STREAMS_KEY_FILE): copy the key the stream was made "
                "with to every machine") from None
        return orjson.loads(plain)


def _bound_to(org_id: str, stream_id: str) -> bytes:
    return f"sealog stream secrets\n{org_id}\n{stream_id}".encode()
