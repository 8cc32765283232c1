"""Credentials at rest: the publish targets' application passwords, encrypted with the deployment's key.

Fernet (AES-128-CBC with an HMAC) from `cryptography`: a ciphertext cannot be read or altered without
`AUTOMATION_SECRET_KEY`, so a database dump or backup does not hand out the WordPress sites. The key
may be any string; it is stretched to Fernet's 32 bytes with SHA-256 so operators need not produce
base64 themselves.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

from shared.settings import Settings


class SecretKeyMissing(RuntimeError):
    """No `AUTOMATION_SECRET_KEY`: credentials can be neither stored nor read."""

    retryable = False  # no retry can supply the key


class SecretUnreadable(RuntimeError):
    """The ciphertext was made with another key (the key changed) or was altered."""

    retryable = False


def new_secret_key() -> str:
    """A fresh key for `AUTOMATION_SECRET_KEY`."""
    return secrets.token_urlsafe(32)


def _fernet(settings: Settings) -> Fernet:
    key = settings.secret_key.get_secret_value()
    if not key:
        raise SecretKeyMissing("AUTOMATION_SECRET_KEY is not set, so credentials cannot be stored or read; "
                               "set it (`automation secret-key` prints one) on the API and publish processes")
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def encrypt(settings: Settings, plaintext: str) -> str:
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(settings: Settings, ciphertext: str) -> str:
    try:
        return _fernet(settings).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("the stored credentials cannot be decrypted with this AUTOMATION_SECRET_KEY "
                               "(was the key changed?); save the target's application password again") from None
