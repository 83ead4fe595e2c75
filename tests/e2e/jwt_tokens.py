"""JWTs made by the tests themselves (HS256 with hmac, RS256/ES256 with the openssl CLI, so no
Python crypto package is needed), and the keys they are signed with."""
import base64
import hashlib
import hmac
import json
import subprocess


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(alg, payload, header=None):
    h = {"alg": alg, "typ": "JWT"}
    h.update(header or {})
    return b64url(json.dumps(h, separators=(",", ":"))) + "." + \
        b64url(json.dumps(payload, separators=(",", ":")))


def hs256(payload, secret, header=None):
    head = _signing_input("HS256", payload, header)
    mac = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + b64url(mac)


def unsigned(payload):
    """alg "none", empty signature."""
    return _signing_input("none", payload) + "."


class PemKey:
    """A key pair made by `openssl genpkey`: `.public_pem` for the consumer, `.sign()` for tokens."""

    def __init__(self, directory, kind):
        self.kind = kind
        self.path = directory / f"{kind.lower()}-{id(self)}.pem"
        args = (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if kind == "RSA"
                else ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
        subprocess.run(["openssl", "genpkey", *args, "-out", str(self.path)], check=True,
                       capture_output=True)
        self.public_pem = subprocess.run(["openssl", "pkey", "-in", str(self.path), "-pubout"],
                                         check=True, capture_output=True, text=True).stdout

    def _sign_bytes(self, data):
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.path), "-binary"],
                              input=data, check=True, capture_output=True).stdout

    def sign(self, payload, alg=None):
        alg = alg or ("RS256" if self.kind == "RSA" else "ES256")
        head = _signing_input(alg, payload)
        sig = self._sign_bytes(head.encode())
        if self.kind == "EC":
            sig = _der_to_raw_ecdsa(sig)
        return head + "." + b64url(sig)


def _der_to_raw_ecdsa(der):
    """An ECDSA-Sig-Value (SEQUENCE of INTEGER r, s) as JWS wants it: r || s, 32 bytes each."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        value = der[i + 2: i + 2 + n].lstrip(b"\0")
        out += value.rjust(32, b"\0")
        i += 2 + n
    return out
