"""`python -m alm_portal.cli …` runs almctl."""

import sys

from alm_portal.cli.almctl import main

sys.exit(main())
