import sys

from fitnets.tools.cli import main

sys.exit(main())
