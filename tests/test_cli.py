import subprocess
import sys

from toykit.cli import main


def test_doctor_reports_versions_device_and_tooling(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    for word in ("toykit", "torch", "device", "threads", "kernel", "book tooling"):
        assert word in out
    assert code == 0, out  # the dev environment has the kernel and jupyter-book 1.x


def test_python_dash_m_runs_the_same_command():
    done = subprocess.run([sys.executable, "-m", "toykit", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for sub in ("doctor", "chapters", "book"):
        assert sub in done.stdout


def test_unknown_notebook_is_a_clear_error(capsys):
    assert main(["chapters", "execute", "99_nothing"]) == 2
    assert "no solution notebook matches '99_nothing'" in capsys.readouterr().err
