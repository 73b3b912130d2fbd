import subprocess
import sys


def test_a_closed_output_pipe_stops_quietly(tmp_path):
    """``systolix ... | head``: when the reader has gone, the command stops with SIGPIPE's
    status and writes no error and no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "systolix.cli", "quantize", "--out",
                                str(tmp_path / "out")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()                        # the reader goes before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, stderr
    assert stderr == ""
