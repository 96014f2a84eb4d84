"""A Ray cluster that cannot be reached is refused before anything is written.

``gdscope run --runner ray --address auto`` with no cluster created the results directory (store,
lock, a ``studies`` row) and then printed a blank line and Ray's own multi-line text (exit 2).
Now it connects before writing: one line naming ``--address``, the value and the fix, exit 2,
and no results directory. The Python API raises the same error (naming ``address=``). The
address is a local port held bound but not listening, so the refusal is immediate (no cluster,
no Ray timeout).
"""

import os
import socket
import subprocess
import sys

import pytest

from _stores import kernel_study
from gdscope import api

pytest.importorskip("ray")


@pytest.fixture
def dead_port():
    """A local TCP port where nothing listens (bound here, so no one else takes it)."""
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        yield held.getsockname()[1]


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(kernel_study("tiny-ray", ns="[4, 8]", seeds="[0]"))
    return path


def test_the_api_refuses_an_unreachable_cluster_and_writes_nothing(tmp_path, study, dead_port):
    results = tmp_path / "res"
    address = f"ray://127.0.0.1:{dead_port}"
    with pytest.raises(ValueError, match="cannot connect to a Ray cluster") as raised:
        api.run_study(study, runner="ray", address=address, results=results)
    message = str(raised.value)
    assert message.startswith(f"address={address!r}: cannot connect to a Ray cluster (")
    assert "`ray start --head`" in message and "pass address=None" in message
    assert "\n" not in message and type(raised.value).__name__ == "AddressError"
    assert not results.exists()


@pytest.mark.parametrize("form", ["HOST:PORT", "ray://HOST:PORT", "auto"])
def test_the_cli_refuses_an_unreachable_cluster_in_one_line_and_writes_nothing(
    tmp_path, study, dead_port, form
):
    results = tmp_path / "res"
    target = f"127.0.0.1:{dead_port}"
    address = form.replace("HOST:PORT", target)
    env = {**os.environ, "RAY_ADDRESS": target}  # what "auto" finds (not another cluster here)
    argv = ["run", str(study), "--runner", "ray", "--address", address, "--results", str(results)]
    out = subprocess.run(
        [sys.executable, "-m", "gdscope", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # Ray's own retries took minutes
    )
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    [line] = out.stderr.splitlines()  # one line: no blank line, no text of Ray's
    assert line.startswith(f"error: --address={address}: cannot connect to a Ray cluster ("), line
    assert "nothing answers at " in line and f":{dead_port}: " in line
    assert "`ray start --head`" in line and "leave out --address" in line
    assert not results.exists()
