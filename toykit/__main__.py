import sys

from toykit.cli import main

sys.exit(main())
