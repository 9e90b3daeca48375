import sys

from demo.script import main

sys.exit(main())
