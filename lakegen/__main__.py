import sys

from lakegen.cli import main

sys.exit(main())
