"""`python -m gilstudy.mpi HOST PORT MAX_FRAME`: the program every rank of a job that
gilstudy.mpi.ranks() launches runs (see gilstudy.mpi.inside.main).
"""

import sys

from gilstudy.mpi.exits import record_exits
from gilstudy.mpi.inside import main

if __name__ == "__main__":
    record_exits()
    raise SystemExit(main(sys.argv[1:]))
