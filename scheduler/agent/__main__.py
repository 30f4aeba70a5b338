import sys

from scheduler.agent.cli import main

sys.exit(main())
