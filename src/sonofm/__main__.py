import sys

from sonofm.cli.main import main

sys.exit(main())
