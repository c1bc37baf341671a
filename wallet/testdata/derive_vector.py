"""Recomputes abandon_account0.txt independently of the Rust code:
BIP39 seed (PBKDF2-HMAC-SHA512, 2048 rounds, salt "mnemonic"), then the
account-key derivation of wallet/src/keys.rs, then secp256k1 from
proto/testdata/check_vectors.py. Run from the repository root."""
import hashlib
import importlib.util

spec = importlib.util.spec_from_file_location("cv", "proto/testdata/check_vectors.py")
cv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cv)
PHRASE = " ".join(["abandon"] * 11 + ["about"])
seed = hashlib.pbkdf2_hmac("sha512", PHRASE.encode(), b"mnemonic", 2048)
counter = 0
while True:
    d = hashlib.sha256(b"chatpay/account-key\0" + seed + (0).to_bytes(4, "big")
                       + counter.to_bytes(4, "big")).digest()
    k = int.from_bytes(d, "big")
    if 0 < k < cv.N:
        break
    counter += 1
print(cv.compress(cv.point_mul(k, cv.G)).hex())
