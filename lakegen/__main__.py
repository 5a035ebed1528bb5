import sys

from lakegen.cli.main import main

sys.exit(main())
