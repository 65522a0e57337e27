"""`python -m gilstudy.compare --serve`: the child's end of `gilstudy compare --python`,
answering the parent's requests on stdin and stdout (gilstudy.compare.child.serve).
Not a command for people: they run `gilstudy compare`.
"""

import sys

from gilstudy.compare.child import child_main

raise SystemExit(child_main(sys.argv[1:]))
