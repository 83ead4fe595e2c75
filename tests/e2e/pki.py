"""Throwaway certificates for TLS tests, made by the openssl CLI in a test's temp dir: a CA and
leaf certificates it signs (server or client), valid for two days."""
import os
import subprocess
from dataclasses import dataclass


@dataclass
class CertKey:
    cert: str  # PEM file paths
    key: str


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory, name="Portico Test CA"):
    """A self-signed CA certificate and its key under directory."""
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(str(directory), name.lower().replace(" ", "-"))
    ca = CertKey(stem + ".crt", stem + ".key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca.key, "-out", ca.cert,
             "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return ca


def issue(ca, directory, name, sans=(), usage="serverAuth"):
    """A certificate for CN=name signed by ca; sans like ["IP:127.0.0.1", "DNS:localhost"];
    usage is the extendedKeyUsage ("serverAuth", "clientAuth" or both, comma-separated)."""
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(str(directory), name)
    leaf = CertKey(stem + ".crt", stem + ".key")
    csr, ext = stem + ".csr", stem + ".ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={usage}"]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    with open(ext, "w") as f:
        f.write("\n".join(lines) + "\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", leaf.key, "-out", csr,
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", ext,
             "-out", leaf.cert)
    return leaf
