"""Print the README's Nth setup command (1: install and scan the demo, 2: install and test).

CI runs what this prints, so the README's commands are what CI checks, not a copy of them.
"""

import re
import sys
from pathlib import Path

readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
commands = re.findall(r"```bash\n#[^\n]*\n(python3 -m venv[^\n]*)\n```", readme)
if len(commands) != 2:
    sys.exit(f"the README should show two setup commands, found {len(commands)}")
print(commands[int(sys.argv[1]) - 1])
