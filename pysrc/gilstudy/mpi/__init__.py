"""MPI ranks as consumers: the same consumers as threads and coprocesses, on the ranks of an
MPI job, on one machine or across many. ranks() launches the job itself; world() serves
from inside a job the user launched with mpiexec. Importing this package loads no MPI: only
the processes inside a job do (see find.py, channel.py, inside.py, job.py).
"""

from gilstudy.mpi.find import INSTALL_HINT, find_mpiexec, unavailable_reason
from gilstudy.mpi.inside import world
from gilstudy.mpi.job import JOB_VARIABLE, LaunchedRank, MpiJob, job_processes, ranks

__all__ = ["ranks", "world", "unavailable_reason", "find_mpiexec", "INSTALL_HINT",
           "MpiJob", "LaunchedRank", "JOB_VARIABLE", "job_processes"]
