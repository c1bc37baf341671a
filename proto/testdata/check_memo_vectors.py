#!/usr/bin/env python3
"""Independent check of proto/testdata/memo_vectors.json, written from
docs/protocol.md ("Encrypted memos") alone, with coincurve (libsecp256k1)
and cryptography (HKDF-SHA256, ChaCha20-Poly1305).

For every vector: every reader opens its key slot and the memo and gets the
text; the envelope is rebuilt from the vector's ephemeral secret and content
key byte for byte; an outsider and a moved envelope do not open.
"""
import hashlib
import json
import os
import sys

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME = 1
HEADER = 1 + 33 + 32 + 1
SLOT = 48
SIZES = (64, 128, 256)
ZERO_NONCE = bytes(12)


def associated_data(genesis, sender, nonce):
    return b"chatpay/memo\x00" + genesis + sender + nonce.to_bytes(8, "big")


def shared_x(secret, point):
    """x-coordinate of secret * point."""
    return PublicKey(point).multiply(secret).format(compressed=True)[1:]


def kek(shared, ephemeral, reader):
    info = b"chatpay/memo-kek\x00" + ephemeral + reader
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def key_check(content_key):
    return hashlib.sha256(b"chatpay/memo-key\x00" + content_key).digest()


def pad(text):
    size = next(s for s in SIZES if len(text) + 2 <= s)
    return (len(text).to_bytes(2, "big") + text).ljust(size, b"\x00")


def encrypt(text, readers, ad, ephemeral_secret, content_key):
    ephemeral = PrivateKey(ephemeral_secret).public_key.format(compressed=True)
    out = bytes([SCHEME]) + ephemeral + key_check(content_key) + bytes([len(readers)])
    for r in readers:
        k = kek(shared_x(ephemeral_secret, r), ephemeral, r)
        out += ChaCha20Poly1305(k).encrypt(ZERO_NONCE, content_key, ad)
    return out + ChaCha20Poly1305(content_key).encrypt(ZERO_NONCE, pad(text), ad)


def decrypt(envelope, slot, secret, ad):
    """Opens slot `slot` with `secret`; raises on any failure."""
    assert envelope[0] == SCHEME, "scheme"
    ephemeral = envelope[1:34]
    check = envelope[34:66]
    count = envelope[66]
    slots = envelope[HEADER:HEADER + count * SLOT]
    ciphertext = envelope[HEADER + count * SLOT:]
    assert len(ciphertext) - 16 in SIZES, "padded size"
    me = PrivateKey(secret).public_key.format(compressed=True)
    k = kek(shared_x(secret, ephemeral), ephemeral, me)
    content_key = ChaCha20Poly1305(k).decrypt(ZERO_NONCE, slots[slot * SLOT:(slot + 1) * SLOT], ad)
    assert key_check(content_key) == check, "key check"
    padded = ChaCha20Poly1305(content_key).decrypt(ZERO_NONCE, ciphertext, ad)
    n = int.from_bytes(padded[:2], "big")
    assert all(b == 0 for b in padded[2 + n:]), "padding"
    return padded[2:2 + n]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "memo_vectors.json")) as f:
        vectors = json.load(f)
    failures = []
    opened = 0
    outsider = hashlib.sha256(b"an outsider").digest()
    for i, v in enumerate(vectors):
        h = bytes.fromhex
        ad = associated_data(h(v["genesis_hash_hex"]), h(v["sender_public_key_hex"]), v["nonce"])
        if ad != h(v["associated_data_hex"]):
            failures.append(f"vector {i}: associated data")
        envelope = h(v["envelope_hex"])
        text = h(v["text_hex"])
        readers = [h(r) for r in v["readers_in_slot_order_hex"]]
        rebuilt = encrypt(text, readers, ad, h(v["ephemeral_secret_hex"]), h(v["content_key_hex"]))
        if rebuilt != envelope:
            failures.append(f"vector {i}: envelope rebuilt differs")
        for r in v["readers"]:
            if readers[r["slot"]] != h(r["public_key_hex"]):
                failures.append(f"vector {i}: reader in the wrong slot")
            try:
                got = decrypt(envelope, r["slot"], h(r["secret_key_hex"]), ad)
                if got != text:
                    failures.append(f"vector {i}: slot {r['slot']} opened to other text")
                opened += 1
            except (InvalidTag, AssertionError, ValueError) as e:
                failures.append(f"vector {i}: slot {r['slot']} does not open: {e!r}")
        moved = associated_data(h(v["genesis_hash_hex"]), h(v["sender_public_key_hex"]), v["nonce"] ^ 1)
        for secret, ad_try, what in ((outsider, ad, "an outsider"), (h(v["readers"][0]["secret_key_hex"]), moved, "another nonce")):
            try:
                decrypt(envelope, v["readers"][0]["slot"], secret, ad_try)
                failures.append(f"vector {i}: opened by {what}")
            except (InvalidTag, AssertionError, ValueError):
                pass
    for f in failures:
        print("FAIL", f)
    print(f"{len(vectors)} memo vectors, {opened} reader slots opened, {len(failures)} failures "
          "(independent: coincurve, cryptography)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
