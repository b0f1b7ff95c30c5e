import sys

from billing_jobs.cli.app import main

sys.exit(main())
