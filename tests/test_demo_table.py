"""`fitnets demo` prints the table the README shows (its accuracies, parameters and compression; the speed-up is the
machine's and its load's). The demo trains for minutes, so this runs only when asked: `make demo-check` sets
FITNETS_DEMO_CHECK=1; the test gives the demo the README's 2 threads — its figures are those of the project's 2-core
CPU; another thread count or CPU rounds differently and trains another student."""

import os
import re
import subprocess
import sys
from itertools import takewhile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.environ.get("FITNETS_DEMO_CHECK"),
                                                   reason="the demo's minutes: `make demo-check` runs it")]


def table(text: str) -> list[list[str]]:
    """The demo table's rows (model, parameters, compression, test accuracy), from its header on."""
    lines = text[text.index("| model | parameters |"):].splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in takewhile(lambda x: x.startswith("|"), lines)]
    rows = rows[2:]  # below the header and its rule
    return [[model, params, compression, acc] for model, params, compression, _speedup, acc in rows]


# The CPU the README's table was made on (/proc/cpuinfo's model name, and AMX among its flags): another CPU takes
# other instruction paths, rounds differently and trains another student (docs/results.md, the demo).
TABLE_CPU = ("Intel(R) Xeon(R) Processor", "amx_tile")


def _cpu() -> tuple[str, set[str]]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    return (model.group(1).strip() if model else "unknown"), set(flags.group(1).split() if flags else ())


def test_the_demo_prints_the_readmes_table(tmp_path, fashion_dir):
    model, flags = _cpu()
    if model != TABLE_CPU[0] or TABLE_CPU[1] not in flags:
        pytest.skip(f"the README's demo table was made on an {TABLE_CPU[0]} with AMX; this CPU ({model}) rounds "
                    "differently")
    readme = README.read_text()
    env = {**os.environ, "OMP_NUM_THREADS": "2", "FITNETS_DATA": str(fashion_dir)}
    demo = subprocess.run([sys.executable, "-m", "fitnets", "demo", "--out", str(tmp_path), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert table(demo.stdout) == table(readme), f"the README's demo table is not what the demo prints:\n{demo.stdout}"
    protocol = re.search(r"Fashion-MNIST, [\d,]+ training images, \d+ epochs \(FitNet: \d+ hint \+ \d+ KD\), 1 seed",
                         demo.stdout)
    assert protocol and protocol.group(0) in " ".join(readme.split()), demo.stdout
