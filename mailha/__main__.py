import sys

from mailha.cli import main

sys.exit(main())
