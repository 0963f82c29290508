import sys

from fitnets.cli import main

sys.exit(main())
