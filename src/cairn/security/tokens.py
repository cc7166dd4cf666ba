"""Users' tokens: random secrets shown once, of which only a tagged BLAKE3 hash is stored.

A token carries 256 random bits, so a fast hash is enough: unlike a password, it cannot be guessed from a
list, and a stolen hash does not lead back to it (GitHub stores its tokens' SHA-256 for the same reason).
"""

from __future__ import annotations

from cairn.hashing import hash_struct

PREFIX = "cairn_"
# Environment variable that holds the acting user's token.
TOKEN_VARIABLE = "CAIRN_TOKEN"
_HASH_TAG = "cairn.token/1"


def new_token() -> str:
    """A new random token: ``cairn_`` and 43 URL-safe characters (32 bytes from `secrets`)."""
    import secrets  # with `hmac`, OpenSSL's hashlib: only making a token needs them, not checking one

    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (``b3:<hex>``); the same token always hashes the same."""
    return hash_struct([_HASH_TAG, token])


def looks_like_token(text: str) -> bool:
    """Whether a text has the form of a cairn token (not whether any user holds it)."""
    return text.startswith(PREFIX) and len(text) > len(PREFIX)
