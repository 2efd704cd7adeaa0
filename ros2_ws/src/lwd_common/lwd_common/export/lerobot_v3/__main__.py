"""`python -m lwd_common.export.lerobot_v3 export|import ...`: the package CLI's two LeRobot commands."""

import sys

from lwd_common.export.__main__ import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "export":
        argv[0] = "lerobot"
    sys.exit(main(argv))
