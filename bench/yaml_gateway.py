"""A Portico process on a routes file in a temp dir, for the Python bench scripts."""
import os
import subprocess
import sys
import tempfile
import time

import requests
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from processes import free_port  # noqa: E402


def start_gateway(binary, routes, workers=2, probe_path="/"):
    """Starts `binary` on `routes` ({"routes": [...]}) and waits until it answers. Returns
    (process, port)."""
    port = free_port()
    work = tempfile.mkdtemp(prefix="portico-bench.")
    with open(os.path.join(work, "routes.yaml"), "w") as f:
        yaml.safe_dump(routes, f)
    with open(os.path.join(work, "config.yaml"), "w") as f:
        yaml.safe_dump({"node": {"listen": [f"127.0.0.1:{port}"], "workers": workers},
                        "admin": {"listen": f"127.0.0.1:{free_port()}",
                                  "keys": [{"key": "bench-key-0123456789", "role": "admin"}]},
                        "control": {"listen": f"127.0.0.1:{free_port()}"},
                        "config": {"provider": "yaml", "file": "routes.yaml"},
                        "log": {"access": "off", "error": os.path.join(work, "error.log")}}, f)
    proc = subprocess.Popen([os.path.abspath(binary), "start", "-c",
                             os.path.join(work, "config.yaml")], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}{probe_path}", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.05)
    return proc, port
