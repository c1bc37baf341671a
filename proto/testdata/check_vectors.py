#!/usr/bin/env python3
"""Checks proto/testdata/*.json with an implementation independent of the
Rust code: secp256k1 and ECDSA from the curve equations, SHA-256 from
hashlib, bech32m from BIP-350, and the signing bytes, block headers,
certificates and account proofs rebuilt from docs/protocol.md. Standard
library only.

Usage: python3 proto/testdata/check_vectors.py
"""
import hashlib
import json
import os
import sys

# secp256k1 domain parameters (SEC 2).
P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def point_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def point_mul(k, pt):
    acc = None
    while k:
        if k & 1:
            acc = point_add(acc, pt)
        pt = point_add(pt, pt)
        k >>= 1
    return acc


def compress(pt):
    return bytes([2 + (pt[1] & 1)]) + pt[0].to_bytes(32, "big")


def decompress(b):
    if len(b) != 33 or b[0] not in (2, 3):
        return None
    x = int.from_bytes(b[1:], "big")
    if x >= P:
        return None
    y2 = (pow(x, 3, P) + 7) % P
    y = pow(y2, (P + 1) // 4, P)
    if y * y % P != y2:
        return None
    if y & 1 != b[0] & 1:
        y = P - y
    return (x, y)


def ecdsa_verify(pub, digest, sig):
    """Returns None when valid, else the error code chatpay uses."""
    if len(sig) != 64:
        return "signature_length"
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (1 <= r < N and 1 <= s < N):
        return "malformed_signature"
    if s > N // 2:
        return "high_s"
    z = int.from_bytes(digest, "big")
    w = pow(s, -1, N)
    pt = point_add(point_mul(z * w % N, G), point_mul(r * w % N, pub))
    if pt is None or pt[0] % N != r:
        return "invalid"
    return None


# bech32 / bech32m, after the BIP-173 and BIP-350 reference code.
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32_CONST, BECH32M_CONST = 1, 0x2BC830A3


def polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def hrp_expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_encode(hrp, data8):
    data = convertbits(data8, 8, 5, True)
    values = hrp_expand(hrp) + data
    mod = polymod(values + [0] * 6) ^ BECH32M_CONST
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def convertbits(data, frombits, tobits, pad):
    acc, bits, ret, maxv = 0, 0, [], (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return ret


def decode_address(addr, expected_hrp):
    """Returns (public key point, None) or (None, error code)."""
    if addr.lower() != addr and addr.upper() != addr:
        return None, "malformed"
    addr = addr.lower()
    pos = addr.rfind("1")
    if pos < 1 or any(ord(c) < 33 or ord(c) > 126 for c in addr):
        return None, "malformed"
    hrp, rest = addr[:pos], addr[pos + 1:]
    if hrp != expected_hrp:
        return None, "wrong_hrp"
    if len(rest) < 6 or len(addr) > 90 or any(c not in CHARSET for c in rest):
        return None, "malformed"
    data = [CHARSET.find(c) for c in rest]
    const = polymod(hrp_expand(hrp) + data)
    if const == BECH32_CONST:
        return None, "wrong_variant"
    if const != BECH32M_CONST:
        return None, "bad_checksum"
    payload = convertbits(data[:-6], 5, 8, False)
    if payload is None:
        # Payload bits that are not a whole number of bytes, or non-zero padding.
        n = len(data[:-6]) * 5 // 8
        return None, "wrong_length" if n != 33 else "non_canonical"
    if len(payload) != 33:
        return None, "wrong_length"
    point = decompress(bytes(payload))
    if point is None:
        return None, "invalid_point"
    return point, None


def signing_bytes(v):
    """The layout of docs/protocol.md, section "Signing bytes (layout version 2)"."""
    out = b"chatpay/transfer\x00" + bytes([2])
    genesis = bytes.fromhex(v["genesis_hash_hex"])
    assert len(genesis) == 32
    out += genesis
    out += compress(decode_address(v["address"], v["hrp"])[0])
    out += v["nonce"].to_bytes(8, "big") + v["fee"].to_bytes(8, "big")
    out += v["expires_at_ms"].to_bytes(8, "big")
    reference = bytes.fromhex(v["reference_hex"])
    assert len(reference) in (0, 32)
    out += bytes([1]) + reference if reference else bytes([0])
    out += bytes([len(v["outputs"])])
    for o in v["outputs"]:
        out += compress(decode_address(o["to"], v["hrp"])[0]) + o["amount"].to_bytes(8, "big")
    memo = bytes.fromhex(v["memo_hex"])
    kind = {"none": 0, "public": 1, "encrypted": 2}[v["memo_kind"]]
    out += bytes([kind])
    if kind != 0:
        out += len(memo).to_bytes(2, "big") + memo
    else:
        assert memo == b""
    return out


def header_hash(h):
    """docs/protocol.md, "Other canonical bytes"."""
    b = lambda k: bytes.fromhex(h[k])
    out = b"chatpay/block-header\x00" + bytes([2]) + b("genesis_hash_hex")
    out += h["height"].to_bytes(8, "big") + h["round"].to_bytes(8, "big")
    out += b("parent_hash_hex") + h["proposer"].to_bytes(4, "big")
    out += h["timestamp_ms"].to_bytes(8, "big") + h["tx_count"].to_bytes(4, "big")
    out += b("tx_root_hex") + b("state_root_hex")
    return hashlib.sha256(out).digest()


def committed(c, genesis, validators):
    """docs/protocol.md, "Account proofs", step 3: the header committed."""
    header, path, top = c["header"], c["commit_path"], c["commit_header"]
    if bytes.fromhex(header["genesis_hash_hex"]) != genesis:
        return False
    parent = header
    for h in path + [top]:
        if bytes.fromhex(h["parent_hash_hex"]) != header_hash(parent) or h["height"] != parent["height"] + 1:
            return False
        parent = h
    if top["round"] != (path[-1] if path else header)["round"] + 1:
        return False
    qc = c["commit_certificate"]
    block = header_hash(top)
    if (bytes.fromhex(qc["block_hash_hex"]), qc["round"], qc["height"]) != (block, top["round"], top["height"]):
        return False
    vote = b"chatpay/vote\x00" + bytes([2]) + genesis + (0).to_bytes(8, "big")
    vote += block + qc["round"].to_bytes(8, "big") + qc["height"].to_bytes(8, "big")
    digest = hashlib.sha256(vote).digest()
    n = len(validators)
    quorum = n - (n - 1) // 3
    signers = set()
    for s in qc["signatures"]:
        i = s["validator"]
        if i >= n or i in signers or ecdsa_verify(validators[i], digest, bytes.fromhex(s["signature_hex"])):
            return False
        signers.add(i)
    return len(signers) >= quorum


def in_state(a, state_root):
    """docs/protocol.md, "Account proofs", steps 1 and 2."""
    sha = lambda b: hashlib.sha256(b).digest()
    pk = bytes.fromhex(a["public_key_hex"])
    key = sha(b"chatpay/account\x00" + pk)
    present = (a["balance"], a["nonce"], a["history_count"]) != (0, 0, 0)
    leaf = b"chatpay/account\x00" + bytes([2]) + a["balance"].to_bytes(8, "big")
    leaf += a["nonce"].to_bytes(8, "big") + a["history_count"].to_bytes(8, "big")
    leaf += bytes.fromhex(a["history_hash_hex"])
    siblings = [bytes.fromhex(x) for x in a["siblings_hex"]]
    d = len(siblings)
    bit = lambda k, i: (k[i // 8] >> (7 - i % 8)) & 1
    leaf_key = bytes.fromhex(a["leaf_key_hex"])
    if d > 256:
        return False
    if leaf_key:
        value_hash = bytes.fromhex(a["leaf_value_hash_hex"])
        if present and (leaf_key != key or value_hash != sha(leaf)):
            return False
        if not present and (leaf_key == key or any(bit(key, i) != bit(leaf_key, i) for i in range(d))):
            return False
        h = sha(b"JMT::LeafNode" + leaf_key + value_hash)
    else:
        if present:
            return False
        h = b"SPARSE_MERKLE_PLACEHOLDER_HASH__"
    for j, s in enumerate(siblings):
        h = sha(b"JMT::IntrnalNode" + (s + h if bit(key, d - 1 - j) else h + s))
    return h == state_root


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "transfer_vectors.json")) as f:
        vectors = json.load(f)
    with open(os.path.join(here, "invalid_vectors.json")) as f:
        invalid = json.load(f)
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    for i, v in enumerate(vectors):
        sk = int(v["secret_key_hex"], 16)
        pub = point_mul(sk, G)
        check(compress(pub).hex() == v["public_key_hex"], f"vector {i}: public key")
        check(bech32_encode(v["hrp"], compress(pub)) == v["address"], f"vector {i}: address")
        point, err = decode_address(v["address"], v["hrp"])
        check(err is None and point == pub, f"vector {i}: address decodes to the key")
        sb = signing_bytes(v)
        check(sb.hex() == v["signing_bytes_hex"], f"vector {i}: signing bytes")
        digest = hashlib.sha256(sb).digest()
        check(digest.hex() == v["tx_id_hex"], f"vector {i}: tx id")
        sig = bytes.fromhex(v["signature_hex"])
        check(ecdsa_verify(pub, digest, sig) is None, f"vector {i}: signature")
    for a in invalid["addresses"]:
        _, err = decode_address(a["address"], a["hrp"])
        check(err == a["error"], f"address '{a['description']}': got {err}, want {a['error']}")
    for s in invalid["signatures"]:
        pub = decompress(bytes.fromhex(s["public_key_hex"]))
        digest = hashlib.sha256(bytes.fromhex(s["message_hex"])).digest()
        err = ecdsa_verify(pub, digest, bytes.fromhex(s["signature_hex"]))
        check(err == s["error"], f"signature '{s['description']}': got {err}, want {s['error']}")

    with open(os.path.join(here, "account_proof_vectors.json")) as f:
        proofs = json.load(f)
    genesis = bytes.fromhex(proofs["genesis_hash_hex"])
    validators = [decompress(bytes.fromhex(v)) for v in proofs["validators_hex"]]
    commit = proofs["commit"]
    check(committed(commit, genesis, validators), "account proofs: the header is not shown committed")
    root = bytes.fromhex(commit["header"]["state_root_hex"])
    for a in proofs["accounts"]:
        ok = in_state(a, root)
        check(ok == a["valid"], f"account proof '{a['description']}': verified {ok}, expected {a['valid']}")

    for f in failures:
        print("FAIL", f)
    bad = len(invalid["addresses"]) + len(invalid["signatures"])
    print(f"{len(vectors)} transfer vectors, {bad} invalid vectors and "
          f"{len(proofs['accounts'])} account proofs checked, "
          f"{len(failures)} failures (independent secp256k1, SHA-256, bech32m)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
