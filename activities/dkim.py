"""Optional DKIM signing of outgoing mail (dkimpy): the key from settings, read once at start."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cached_property

from activities.mail import Unbuildable

_DKIM_HEADERS = [b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Unsubscribe", b"List-Unsubscribe-Post",
                 b"MIME-Version", b"Content-Type"]


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: the DNS record `{selector}._domainkey.{domain}` publishes its public
    half. `private_key`: a PEM private key, RSA (1024 bits or more, RFC 8301) or Ed25519
    (RFC 8463), or an Ed25519 key as dknewkey writes it (the base64 of its 32-byte seed)."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)

    @cached_property
    def signer(self) -> tuple[bytes, bytes]:
        """(signature algorithm, the key as dkimpy takes it), read once; Unbuildable if unusable."""
        # Imported here: a worker that does not sign never pays their ~0.1 s of imports.
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        key = self.private_key.strip()
        if not key.startswith(b"-----BEGIN"):
            try:
                seed = base64.b64decode(key, validate=True)
            except ValueError as err:
                raise Unbuildable(f"the DKIM key for {self.domain} is neither PEM nor a base64 Ed25519 seed") from err
            if len(seed) != 32:
                raise Unbuildable(f"the DKIM key for {self.domain} is not PEM and not a 32-byte Ed25519 seed")
            return b"ed25519-sha256", key
        try:
            loaded = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:  # TypeError: it wants a password
            raise Unbuildable(f"the DKIM key for {self.domain} cannot be read: {err}") from err
        if isinstance(loaded, ed25519.Ed25519PrivateKey):
            seed = loaded.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
            return b"ed25519-sha256", base64.b64encode(seed)
        if isinstance(loaded, rsa.RSAPrivateKey):
            if loaded.key_size < 1024:
                raise Unbuildable(f"the DKIM key for {self.domain} has {loaded.key_size} bits: "
                                  "receivers ignore RSA keys under 1024 (RFC 8301)")
            # Written out again: dkimpy reads PEM only with bare \n line ends.
            return b"rsa-sha256", loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())
        raise Unbuildable(f"the DKIM key for {self.domain} is {type(loaded).__name__}: DKIM signs with RSA or Ed25519")

    def sign(self, data: bytes) -> bytes:
        """The DKIM-Signature header (CRLF-terminated) for the final bytes of a message. dkimpy's RSA
        is pure Python: about 10 ms a message with a 2048-bit key, against under 1 ms for Ed25519."""
        import dkim as dkimpy

        algorithm, key = self.signer
        try:
            header: bytes = dkimpy.sign(data, self.selector.encode("ascii"), self.domain.encode("ascii"), key,
                                        canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algorithm,
                                        include_headers=_DKIM_HEADERS)
        except (dkimpy.DKIMException, UnicodeError) as err:
            raise Unbuildable(f"the message cannot be DKIM-signed for {self.domain}: {err}") from err
        return header
